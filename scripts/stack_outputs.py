"""The Terraform outputs of a deployed environment (what the smoke test and operators need to reach it).

    python scripts/stack_outputs.py --env dev                 # all outputs as JSON
    python scripts/stack_outputs.py --env dev websocket_url   # one output, bare (for shell scripts)
    python scripts/stack_outputs.py --file outputs.json websocket_url

Reads `terraform output -json` of cdktf.out/stacks/classwire-ENV (initialized: `make init ENV=...`), or a file
holding that command's output.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from classwire_infra import paths
from classwire_infra.outputs import REQUIRED_OUTPUTS

# What every stack outputs; a deployed stack without one of them is incomplete.
REQUIRED = REQUIRED_OUTPUTS


class OutputsError(RuntimeError):
    """The outputs could not be read, or a required one is missing."""


@dataclass(frozen=True)
class StackOutputs:
    websocket_url: str
    management_endpoint: str
    api_id: str
    stage: str
    region: str
    function_names: dict[str, str]
    redis_endpoint: str
    jwt_secret_arn: str
    extra: dict[str, object] = field(default_factory=dict)

    @classmethod
    def from_terraform_json(cls, document: dict) -> StackOutputs:
        """`terraform output -json`: {"name": {"value": ..., "type": ..., "sensitive": bool}}."""
        if not isinstance(document, dict):
            raise OutputsError("terraform output -json did not return an object")
        values = {
            name: entry["value"]
            for name, entry in document.items()
            if isinstance(entry, dict) and "value" in entry
        }
        if not values:
            raise OutputsError("the stack has no outputs: is it applied, and is this its state?")
        missing = [name for name in REQUIRED if name not in values]
        if missing:
            raise OutputsError(f"outputs missing: {', '.join(missing)}")
        return cls(
            **{name: values[name] for name in REQUIRED},
            extra={k: v for k, v in values.items() if k not in REQUIRED},
        )

    def as_dict(self) -> dict[str, object]:
        values = {name: getattr(self, name) for name in REQUIRED}
        return {**values, **self.extra}


def stack_dir(env: str) -> Path:
    return paths.stack_dir(f"classwire-{env}")


def read_terraform_outputs(directory: Path, terraform: str = "terraform") -> dict:
    if not directory.is_dir():
        raise OutputsError(f"{directory} does not exist: synthesize and init the stack first")
    run = subprocess.run(
        [terraform, f"-chdir={directory}", "output", "-json"], capture_output=True, text=True, timeout=300
    )
    if run.returncode != 0:
        raise OutputsError(f"terraform output failed in {directory}: {run.stderr.strip()[-2000:]}")
    return json.loads(run.stdout or "{}")


def load(env: str | None = None, file: Path | None = None) -> StackOutputs:
    if file is not None:
        try:
            return StackOutputs.from_terraform_json(json.loads(file.read_text()))
        except (OSError, ValueError) as error:
            raise OutputsError(f"{file}: {error}") from error
    if env is None:
        raise OutputsError("name an environment or a file")
    return StackOutputs.from_terraform_json(read_terraform_outputs(stack_dir(env)))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--env")
    source.add_argument("--file", type=Path, help="a file holding `terraform output -json`")
    parser.add_argument("name", nargs="?", help="print only this output")
    args = parser.parse_args(argv)
    try:
        outputs = load(args.env, args.file).as_dict()
    except OutputsError as error:
        print(f"stack_outputs: {error}", file=sys.stderr)
        return 1
    if args.name is None:
        print(json.dumps(outputs, indent=2, sort_keys=True))
    elif args.name not in outputs:
        print(f"stack_outputs: no output named {args.name!r}", file=sys.stderr)
        return 1
    else:
        value = outputs[args.name]
        print(value if isinstance(value, str) else json.dumps(value, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
