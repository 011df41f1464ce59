"""scripts/plan_summary.py: hand-written plans in Terraform's documented JSON format, and a real plan that
`terraform` makes of a config of built-in `terraform_data` resources (no provider, no network)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from scripts import plan_summary

FIXTURES = Path(__file__).parent / "fixtures"


def summary_of(name: str) -> plan_summary.PlanSummary:
    path = FIXTURES / name
    return plan_summary.summarize(plan_summary.load_plan(path), plan_summary.env_of(path))


def test_counts_each_kind_of_change_and_ignores_no_ops_and_data_sources():
    summary = summary_of("classwire-staging.tfplan.json")
    assert summary.env == "staging"
    assert summary.counts == {"create": 1, "update": 1, "replace": 1, "delete": 1}
    assert summary.changes["replace"] == [
        "aws_elasticache_replication_group.cache_replication_group_5D1E2F3A"
    ]
    assert summary.output_changes == ["redis_endpoint"]
    assert summary.destructive


@pytest.mark.parametrize(
    ("actions", "kind"),
    [
        (["create"], "create"),
        (["update"], "update"),
        (["delete"], "delete"),
        (["forget"], "delete"),
        (["delete", "create"], "replace"),
        (["create", "delete"], "replace"),
        (["no-op"], None),
        (["read"], None),
    ],
)
def test_action_lists(actions, kind):
    assert plan_summary.kind_of(actions) == kind


def test_markdown_is_collapsed_per_environment_with_a_marker_and_a_warning_on_destruction():
    text = plan_summary.render(
        [summary_of("classwire-staging.tfplan.json"), summary_of("classwire-prod.tfplan.json")]
    )
    assert text.startswith(plan_summary.MARKER + "\n")
    assert text.count("<details>") == text.count("</details>") == 2
    assert (
        "<summary><b>staging</b>: 1 to create, 1 to update, 1 to replace, 1 to delete ⚠️ destroys resources"
        in text
    )
    assert "<summary><b>prod</b>: no changes</summary>" in text
    assert "**⚠️ Deletes or replaces resources in: staging**" in text
    staging = text.split("<b>prod</b>")[0]
    # Replacements and deletions are listed first.
    assert (
        staging.index("`replace` `aws_elasticache")
        < staging.index("`delete` `aws_cloudwatch")
        < staging.index("`update` `aws_lambda")
        < staging.index("`create` `aws_sns")
    )
    assert "aws_vpc" not in text and "data.aws_caller_identity" not in text
    assert "wss://" not in text  # values never reach the comment


def test_long_lists_are_cut(tmp_path):
    plan = {
        "format_version": "1.2",
        "resource_changes": [
            {"address": f"aws_sqs_queue.q{i}", "mode": "managed", "change": {"actions": ["create"]}}
            for i in range(100)
        ],
    }
    text = plan_summary.render([plan_summary.summarize(plan, "dev")])
    assert text.count("- `create`") == plan_summary.MAX_ADDRESSES and "… and 40 more" in text


def test_reduce_keeps_addresses_and_actions_but_no_values(tmp_path):
    out = tmp_path / "plan-staging.json"
    assert plan_summary.main(["--reduce", str(FIXTURES / "classwire-staging.tfplan.json"), str(out)]) == 0
    reduced = json.loads(out.read_text())
    assert "before" not in out.read_text() and "cache.r7g" not in out.read_text()
    assert plan_summary.summarize(reduced, "staging") == summary_of("classwire-staging.tfplan.json")
    assert plan_summary.env_of(out) == "staging"


def test_detailed_exitcode_and_errors(tmp_path, capsys):
    assert plan_summary.main(["--detailed-exitcode", str(FIXTURES / "classwire-prod.tfplan.json")]) == 0
    assert plan_summary.main(["--detailed-exitcode", str(FIXTURES / "classwire-staging.tfplan.json")]) == 2
    bad = tmp_path / "classwire-dev.tfplan.json"
    bad.write_text('{"resource_changes": []}')
    assert plan_summary.main([str(bad)]) == 1
    assert "format_version" in capsys.readouterr().err
    assert plan_summary.main(["--marker"]) == 0
    assert capsys.readouterr().out.strip() == plan_summary.MARKER


CONFIG_BEFORE = """
resource "terraform_data" "kept" { input = "same" }
resource "terraform_data" "changed" { input = "v1" }
resource "terraform_data" "rebuilt" { triggers_replace = ["v1"] }
resource "terraform_data" "removed" { input = "gone soon" }
"""
CONFIG_AFTER = """
resource "terraform_data" "kept" { input = "same" }
resource "terraform_data" "changed" { input = "v2" }
resource "terraform_data" "rebuilt" { triggers_replace = ["v2"] }
resource "terraform_data" "added" { input = "new" }
output "changed" { value = terraform_data.changed.output }
"""


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform is not installed")
def test_summarizes_a_real_terraform_plan(tmp_path, capsys):
    environment = {**os.environ, "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1", "TF_INPUT": "0"}

    def terraform(*args: str) -> str:
        run = subprocess.run(
            ["terraform", *args], cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
        return run.stdout

    (tmp_path / "main.tf").write_text(CONFIG_BEFORE)
    terraform("init", "-no-color")
    terraform("apply", "-auto-approve", "-no-color")
    (tmp_path / "main.tf").write_text(CONFIG_AFTER)
    terraform("plan", "-no-color", "-out=classwire-dev.tfplan")
    plan_file = tmp_path / "classwire-dev.tfplan.json"
    plan_file.write_text(terraform("show", "-json", "classwire-dev.tfplan"))

    summary = plan_summary.summarize(plan_summary.load_plan(plan_file), plan_summary.env_of(plan_file))
    assert summary.env == "dev"
    assert summary.counts == {"create": 1, "update": 1, "replace": 1, "delete": 1}
    assert summary.changes == {
        "create": ["terraform_data.added"],
        "update": ["terraform_data.changed"],
        "replace": ["terraform_data.rebuilt"],
        "delete": ["terraform_data.removed"],
    }
    assert summary.output_changes == ["changed"]
    assert plan_summary.main(["--detailed-exitcode", str(plan_file)]) == 2
    assert "<b>dev</b>: 1 to create, 1 to update, 1 to replace, 1 to delete ⚠️" in capsys.readouterr().out

    terraform("apply", "-auto-approve", "-no-color")
    terraform("plan", "-no-color", "-out=after.tfplan")
    plan_file.write_text(terraform("show", "-json", "after.tfplan"))
    assert plan_summary.main(["--detailed-exitcode", str(plan_file)]) == 0
