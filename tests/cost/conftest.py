"""Fixtures for the cost model: the price book, and dev and prod synthesized once per session."""

from __future__ import annotations

import json

import pytest

from cost.prices import PriceBook, load_prices


@pytest.fixture(scope="session")
def prices() -> PriceBook:
    return load_prices()


@pytest.fixture(scope="session")
def synthesized(tmp_path_factory) -> dict[str, dict]:
    """dev and prod synthesized from a placeholder zip into a temporary cdktf.out (as tests/infra does)."""
    from classwire_infra.synth import synth
    from tests.infra.conftest import write_placeholder_zip

    root = tmp_path_factory.mktemp("cost")
    zip_file = write_placeholder_zip(root / "dist" / "classwire-lambda-placeholder.zip")
    stacks = {}
    for env in ("dev", "prod"):
        directory = synth(env, out=root / "cdktf.out", zip_file=zip_file)
        stacks[env] = json.loads((directory / "cdk.tf.json").read_text())
    return stacks
