"""`make deploy` (ENV=local): the whole system on this machine, deployed the way AWS gets it.

1. build the Lambda zip (scripts/build_lambdas.py, the same package the cloud gets, for this CPU),
   synthesize `classwire-local` from the same constructs (or reuse an unchanged synthesis) and
   `terraform init` it, while redis-server and the AWS API emulator (moto server with the shim) start;
2. `terraform apply` it to the emulator;
3. read what was applied (the state, as `terraform show -json` shapes it): the API's routes, integrations,
   authorizer and each function's handler, package and environment become the local gateway's configuration;
4. serve the WebSocket API and the demo page on 127.0.0.1 until Ctrl-C, then stop everything.

Runs until interrupted; prints `classwire local cloud is up` once it serves, with the URLs.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

from classwire_infra.config import EnvConfig, load
from classwire_infra.paths import ROOT
from localcloud import processes
from localcloud.emulator import AwsEmulator
from localcloud.manifest import Manifest
from localcloud.system import LocalSystem
from localcloud.web_server import DemoWebServer

READY_LINE = "classwire local cloud is up"
DEFAULT_GATEWAY_PORT = 8080
DEFAULT_WEB_PORT = 8081


class DeployError(RuntimeError):
    pass


def run(command: list[str], *, env: dict[str, str] | None = None, what: str) -> str:
    """Runs a step; on failure shows its own output, since that is where the reason is."""
    result = processes.run(
        command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if result.returncode != 0:
        raise DeployError(
            f"{what} failed (exit {result.returncode}):\n{result.stdout[-4000:]}{result.stderr[-4000:]}"
        )
    return result.stdout


def terraform_environment() -> dict[str, str]:
    config_file = run([str(ROOT / "scripts/terraform-cli-config")], what="terraform provider mirror").strip()
    env = {**os.environ, "TF_IN_AUTOMATION": "1"}
    if config_file:
        env["TF_CLI_CONFIG_FILE"] = config_file
    return env


def prepare_stack(
    config: EnvConfig, timings: dict[str, float], say: Callable[[str], None]
) -> tuple[Path, dict[str, str]]:
    """Everything before the apply that needs no emulator: build, synth (or reuse it), terraform init.
    `make deploy` runs it while Redis and the emulator start. Returns the stack's directory and the
    environment Terraform runs in."""
    endpoint = config.aws_endpoint
    if endpoint is None:
        raise DeployError(
            f"environment {config.name!r} has no aws_endpoint: make deploy applies to the emulator"
        )
    build_package(config, timings, say)
    started = time.monotonic()
    stack_dir = ROOT / "cdktf.out" / "stacks" / config.stack_name
    stamp, digest = stack_dir / ".synth-inputs", synth_inputs_digest(config, endpoint)
    if (stack_dir / "cdk.tf.json").exists() and stamp.exists() and stamp.read_text() == digest:
        say(f"{config.stack_name} unchanged since its last synthesis: applying that cdk.tf.json")
    else:
        say(f"synthesizing {config.stack_name} for the emulator at {endpoint}")
        run(
            [
                sys.executable,
                "-m",
                "classwire_infra.synth",
                "--env",
                config.name,
                "--aws-endpoint",
                endpoint,
            ],
            what="synth",
        )
        stamp.write_text(digest)
    timings["synth"] = time.monotonic() - started
    # A fresh emulator holds nothing: state from an earlier run would describe resources that are gone.
    for stale in stack_dir.glob("terraform.tfstate*"):
        stale.unlink()
    started = time.monotonic()
    env = terraform_environment()
    run(["terraform", f"-chdir={stack_dir}", "init", "-input=false"], env=env, what="terraform init")
    timings["terraform init"] = time.monotonic() - started
    return stack_dir, env


def apply_stack(
    prepared: Future[tuple[Path, dict[str, str]]], timings: dict[str, float], say: Callable[[str], None]
) -> Callable[[AwsEmulator], Manifest]:
    """The `deploy` step of LocalSystem: once `prepared` is done, terraform apply against the emulator."""

    def deploy(aws: AwsEmulator) -> Manifest:
        stack_dir, terraform_env = prepared.result()
        env = {**terraform_env, **aws.client_environment}
        terraform = ["terraform", f"-chdir={stack_dir}"]
        say("terraform apply (about a minute: the AWS provider waits for the KMS key and the cache cluster)")
        started = time.monotonic()
        applied = run(
            [*terraform, "apply", "-auto-approve", "-input=false", "-no-color"], env=env, what="apply"
        )
        timings["terraform apply"] = time.monotonic() - started
        say(next((line for line in applied.splitlines() if line.startswith("Apply complete")), "applied"))
        return Manifest.from_terraform_state(applied_state(stack_dir, env), stack_dir)

    return deploy


def applied_state(stack_dir: Path, env: dict[str, str]) -> dict:
    """What was applied, shaped like `terraform show -json` (`values.root_module.resources[]`).

    `terraform show` starts the AWS provider for its schemas, about 4 s on this machine, to print what the
    local state file already holds attribute for attribute. So a version-4 state file (Terraform 0.12 and
    later) is read directly; any other goes through `terraform show -json`. tests/emulator/test_apply.py
    checks the two agree on every resource of an applied stack.
    """
    state = json.loads((stack_dir / "terraform.tfstate").read_text())
    if state.get("version") != 4:
        return json.loads(
            run(["terraform", f"-chdir={stack_dir}", "show", "-json"], env=env, what="terraform show")
        )
    resources = []
    for resource in state.get("resources", []):
        address = ("data." if resource["mode"] == "data" else "") + f"{resource['type']}.{resource['name']}"
        for instance in resource["instances"]:
            key = f"[{json.dumps(instance['index_key'])}]" if "index_key" in instance else ""
            resources.append(
                {
                    "address": address + key,
                    "mode": resource["mode"],
                    "type": resource["type"],
                    "name": resource["name"],
                    "values": instance["attributes"],
                }
            )
    return {"values": {"root_module": {"resources": resources}}}


def synth_inputs_digest(config: EnvConfig, aws_endpoint: str) -> str:
    """What the synthesized stack depends on: the constructs, the Lambda code (its route table and
    settings), the package, the locked dependencies and the emulator's endpoint. When none changed, the
    last synthesis is reused: synthesis is deterministic, and most of its time is jsii's start-up."""
    digest = hashlib.sha256(aws_endpoint.encode())
    sources = [*(ROOT / "terraform").rglob("*.py"), *(ROOT / "lambdas").rglob("*.py")]
    for path in [
        *sorted(p for p in sources if "__pycache__" not in p.parts),
        ROOT / "uv.lock",
        ROOT / config.lambda_zip,
    ]:
        digest.update(str(path.relative_to(ROOT)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def build_package(config: EnvConfig, timings: dict[str, float], say: Callable[[str], None]) -> None:
    started = time.monotonic()
    output = run([sys.executable, "scripts/build_lambdas.py", "--env", config.name], what="build")
    timings["build"] = time.monotonic() - started
    for line in output.strip().splitlines():
        say(line)


def wait_for_interrupt() -> None:
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--port", type=int, default=int(os.environ.get("CLASSWIRE_LOCAL_PORT", DEFAULT_GATEWAY_PORT))
    )
    parser.add_argument(
        "--web-port", type=int, default=int(os.environ.get("CLASSWIRE_LOCAL_WEB_PORT", DEFAULT_WEB_PORT))
    )
    parser.add_argument(
        "--redis",
        choices=("single", "cluster"),
        default="single",
        help="one redis-server, or a Redis Cluster of 3 primaries and 3 replicas (make deploy REDIS=cluster)",
    )
    args = parser.parse_args(argv)
    processes.end_with_parent()  # a SIGKILLed `make deploy` stops this deploy, and so everything it started

    def say(message: str) -> None:
        print(f"[deploy] {message}", flush=True)

    config = load("local")
    emulator_port = urlsplit(config.aws_endpoint or "").port or 0
    timings: dict[str, float] = {}
    started = time.monotonic()
    try:
        # Build, synth and init need no emulator: they run while Redis and the emulator start.
        background = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prepare")
        prepared = background.submit(prepare_stack, config, timings, say)
        background.shutdown(wait=False)
        system = LocalSystem(
            gateway_port=args.port,
            aws_port=emulator_port,
            deploy=apply_stack(prepared, timings, say),
            issuer=config.jwt.issuer,
            audience=config.jwt.audience,
            redis=args.redis,
        )
        with (
            system,
            DemoWebServer(
                lambda user, classroom, role, name: system.token(user, classroom, role, name),
                system.websocket_url,
                port=args.web_port,
            ) as web,
        ):
            assert system.aws is not None and system.redis is not None  # started by `with system`
            timings["total"] = time.monotonic() - started
            say("timings: " + ", ".join(f"{step} {seconds:.1f}s" for step, seconds in timings.items()))
            print(
                f"{READY_LINE}\n"
                f"  demo page      {web.url}  (open two windows: one teacher, one student)\n"
                f"  WebSocket API  {system.websocket_url}?token=<JWT>&classroom=<id>\n"
                f"  @connections   {system.management_endpoint}\n"
                f"  AWS emulator   {system.aws.endpoint}   Redis {system.redis.url}"
                f"{' (a cluster: 3 primaries, 3 replicas)' if args.redis == 'cluster' else ''}\n"
                f"  a token:       make token USER=alice CLASSROOM=demo ROLE=teacher\n"
                f"Ctrl-C stops everything.",
                flush=True,
            )
            wait_for_interrupt()
            say("stopping")
    except DeployError as error:
        print(f"[deploy] {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        say("interrupted; everything it started is stopped")
        return 130
    say("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
