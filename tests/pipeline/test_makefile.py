"""The Makefile's promises about deploying: ask before applying, never reorder plan and apply, keep the
committed reports on `make clean`. Checked with make itself (dry runs, and the confirmation step for real)."""

from __future__ import annotations

import os
import subprocess

from classwire_infra.paths import ROOT


def make(
    *args: str, env: dict[str, str] | None = None, stdin: int | None = subprocess.DEVNULL
) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("CI", "AUTO_APPROVE", "MAKEFLAGS", "MAKELEVEL")}
    return subprocess.run(
        ["make", "--no-print-directory", *args],
        cwd=ROOT,
        env={**base, **(env or {})},
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_an_apply_outside_ci_without_a_terminal_is_refused():
    refused = make("confirm-apply", "ENV=prod")
    assert refused.returncode != 0
    assert "AUTO_APPROVE=1" in refused.stderr


def test_ci_or_an_explicit_auto_approve_skips_the_question():
    assert make("confirm-apply", "ENV=prod", env={"CI": "true"}).returncode == 0
    assert make("confirm-apply", "ENV=prod", "AUTO_APPROVE=1").returncode == 0


def test_deploy_plans_then_asks_then_applies_even_under_make_j():
    dry = make("-n", "-j4", "deploy", "ENV=dev", env={"CI": "true"})
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    plan = next(i for i, line in enumerate(lines) if " plan -input=false -out=" in line)
    init = next(i for i, line in enumerate(lines) if " init -input=false" in line)
    apply = next(i for i, line in enumerate(lines) if " apply -input=false classwire-dev.tfplan" in line)
    synth = next(i for i, line in enumerate(lines) if "classwire_infra.synth --env dev" in line)
    assert synth < init < plan < apply


def test_clean_keeps_the_committed_reports():
    dry = make("-n", "clean")
    assert dry.returncode == 0
    assert "reports/tmp" in dry.stdout and "reports/*" not in dry.stdout and "reports/bench" not in dry.stdout
