"""A snapshot of every environment's synthesized stack, so a change to the infrastructure is a visible diff.

After an intended change: `UPDATE_SNAPSHOTS=1 make test` (or pytest tests/infra/test_snapshots.py), review the
diff of tests/infra/snapshots/, commit it.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from pathlib import Path

import pytest

from classwire_infra.config import load

from .conftest import ENVIRONMENTS

SNAPSHOTS = Path(__file__).parent / "snapshots"


def normalized(name: str, text: str) -> str:
    """The stack as committed: the local stack's host-derived runtime and architecture are placeholders."""
    document = json.loads(text)
    if name == "local":
        config = load("local")
        for function in document["resource"]["aws_lambda_function"].values():
            assert function["runtime"] == config.lambda_runtime
            function["runtime"] = "<python3.host-minor>"
            function["architectures"] = ["<host-architecture>"]
    result = json.dumps(document, indent=2, sort_keys=True) + "\n"
    return re.sub(r"dist/classwire-lambda-[^\"]+\.zip", "dist/<package>.zip", result)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_snapshot(stacks, env):
    snapshot = SNAPSHOTS / f"classwire-{env}.json"
    actual = normalized(env, stacks[env].text)
    if os.environ.get("UPDATE_SNAPSHOTS") == "1" or not snapshot.exists():
        SNAPSHOTS.mkdir(exist_ok=True)
        snapshot.write_text(actual)
        if os.environ.get("UPDATE_SNAPSHOTS") != "1":
            pytest.fail(f"{snapshot} did not exist and was written: review and commit it")
        return
    expected = snapshot.read_text()
    if actual != expected:
        diff = "".join(
            difflib.unified_diff(
                expected.splitlines(True),
                actual.splitlines(True),
                f"{snapshot.name} (committed)",
                f"{snapshot.name} (synthesized)",
                n=2,
            )
        )
        pytest.fail(
            f"classwire-{env} differs from its snapshot; if intended, rerun with UPDATE_SNAPSHOTS=1 "
            f"and commit the result:\n{diff[:6000]}"
        )
