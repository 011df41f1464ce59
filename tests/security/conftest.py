"""Fixtures for the security suite: the local system (with its Lambda logs kept in files, so the tests
can read every line the functions wrote) and the synthesized stacks of the AWS environments."""

from __future__ import annotations

import secrets
import time

import pytest

from classwire.settings import Limits
from localcloud.gateway import GatewayThread
from localcloud.lambda_runtime import LambdaRuntime
from localcloud.system import LocalSystem


@pytest.fixture(scope="session")
def system(tmp_path_factory):
    """The whole local system; every function's stdout/stderr goes to `<log_dir>/<function>.log`."""
    log_dir = tmp_path_factory.mktemp("lambda-logs")
    # Leaves are announced at once (no presence grace), so the suite sees them while it runs.
    with LocalSystem(key=secrets.token_urlsafe(48), limits=Limits(presence_grace_seconds=0)) as local:
        # The runtime opens a function's log when its first worker starts, i.e. on first invocation.
        _runtime(local).log_dir = log_dir
        yield local


def _runtime(system: LocalSystem) -> LambdaRuntime:
    gateway = system._gateway
    assert isinstance(gateway, GatewayThread)  # the suite's system runs its gateway in a thread
    return gateway.gateway.runtime


def lambda_logs(system: LocalSystem) -> str:
    """Everything the local Lambdas have written so far (CloudWatch, on AWS)."""
    log_dir = _runtime(system).log_dir
    assert log_dir is not None
    return "".join(path.read_text(errors="replace") for path in sorted(log_dir.glob("*.log")))


AWS_ENVIRONMENTS = ("dev", "staging", "prod")


@pytest.fixture(scope="session")
def aws_stacks(tmp_path_factory):
    """dev, staging and prod synthesized once per session, with the infrastructure tests' own helpers.

    Most of synthesis' cost is the jsii runtime starting, which happens once per process: when
    tests/infra runs in the same session, these three stacks add a few seconds, not another start.
    """
    from classwire_infra.synth import synth
    from tests.infra.conftest import Synthesized, write_placeholder_zip

    root = tmp_path_factory.mktemp("security-infra")
    zip_file = write_placeholder_zip(root / "dist" / "classwire-lambda-placeholder.zip")
    stacks = {}
    for env in AWS_ENVIRONMENTS:
        started = time.monotonic()
        directory = synth(env, out=root / "cdktf.out", zip_file=zip_file)
        stacks[env] = Synthesized(env, directory, time.monotonic() - started)
    return stacks


@pytest.fixture(scope="module")
def report(request):
    """Writes a line to the terminal even when output is captured (the figures the report quotes)."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")

    def write(line: str) -> None:
        if reporter is not None:
            reporter.write_line(line)
        else:
            print(line)

    return write
