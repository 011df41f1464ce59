"""Fixtures for the cost model: its module, the price book, and dev and prod synthesized once per session."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def cost_model():
    spec = importlib.util.spec_from_file_location("cost_model", ROOT / "scripts" / "cost_model.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["cost_model"] = module  # dataclasses resolve their annotations through sys.modules
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def prices(cost_model):
    return cost_model.load_prices()


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory) -> dict[str, dict]:
    """dev and prod synthesized from a placeholder zip into a temporary cdktf.out (as tests/infra does)."""
    import main  # terraform/main.py

    from tests.infra.conftest import write_placeholder_zip

    root = tmp_path_factory.mktemp("cost")
    zip_file = write_placeholder_zip(root / "dist" / "classwire-lambda-placeholder.zip")
    stacks = {}
    for env in ("dev", "prod"):
        directory = main.synth(env, out=root / "cdktf.out", zip_file=zip_file)
        stacks[env] = json.loads((directory / "cdk.tf.json").read_text())
    return stacks
