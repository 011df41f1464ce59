"""One shimmed moto server for the emulator tests, its state reset before each test.

CLASSWIRE_EMULATOR_WITHOUT_SHIM=1 runs the same tests against plain moto: each test in test_moto_shim.py
then fails, which shows the gap it guards is still open in moto (and when a new moto has closed one).
"""

from __future__ import annotations

import os

import pytest

from localcloud.emulator import AwsEmulator


@pytest.fixture(scope="session")
def emulator():
    # No test here needs AWS managed policies; loading them makes every reset (each test) slower.
    shim = os.environ.get("CLASSWIRE_EMULATOR_WITHOUT_SHIM") != "1"
    with AwsEmulator(shim=shim, load_managed_policies=False) as aws:
        yield aws


@pytest.fixture
def aws(emulator):
    emulator.reset()
    return emulator
