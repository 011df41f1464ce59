"""Terraform plans (`terraform show -json`) as one collapsed markdown summary: the PR comment and drift report.

    python scripts/plan_summary.py cdktf.out/stacks/classwire-*/classwire-*.tfplan.json   # markdown on stdout
    python scripts/plan_summary.py --reduce PLAN.json OUT.json   # addresses and actions only, no values
    python scripts/plan_summary.py --detailed-exitcode PLAN.json # exit 0: no changes, 2: changes (drift)
    python scripts/plan_summary.py --marker                      # the hidden marker the comment is found by

A plan's JSON holds attribute values, some sensitive, so CI never uploads it: each plan job keeps only
`--reduce`'s output (the same format, without values) and the comment job summarizes those.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

# The workflow finds its earlier comment by this line and edits it instead of adding another.
MARKER = "<!-- classwire-plan-summary -->"
# Terraform's plan JSON format versions this reader understands (1.x: additions only).
SUPPORTED_FORMAT = re.compile(r"^1\.\d+$")
# How many addresses a section lists before it says "and N more" (a PR comment is capped at 65,536 chars).
MAX_ADDRESSES = 60
KINDS = ("create", "update", "replace", "delete")


class PlanFormatError(ValueError):
    """The file is not Terraform plan JSON this script understands."""


@dataclass
class PlanSummary:
    env: str
    changes: dict[str, list[str]] = field(default_factory=lambda: {kind: [] for kind in KINDS})
    output_changes: list[str] = field(default_factory=list)
    errored: bool = False

    @property
    def counts(self) -> dict[str, int]:
        return {kind: len(addresses) for kind, addresses in self.changes.items()}

    @property
    def has_changes(self) -> bool:
        return any(self.changes.values()) or bool(self.output_changes)

    @property
    def destructive(self) -> bool:
        return bool(self.changes["delete"] or self.changes["replace"])


def kind_of(actions: list[str]) -> str | None:
    """Terraform's action lists: ["create"], ["update"], ["delete"], ["delete","create"] and
    ["create","delete"] (replace, either order), ["no-op"], ["read"] (data sources); and "forget" (1.7+)."""
    if "delete" in actions and "create" in actions:
        return "replace"
    if actions == ["create"]:
        return "create"
    if actions == ["update"]:
        return "update"
    if actions == ["delete"] or actions == ["forget"]:
        return "delete"
    return None  # no-op, read


def env_of(path: Path) -> str:
    """`classwire-dev.tfplan.json` (or a reduced `plan-dev.json`) -> `dev`."""
    match = re.search(r"(?:classwire|plan)-([a-z0-9]+)(?:\.tfplan)?\.json$", path.name)
    return match.group(1) if match else path.stem


def load_plan(path: Path) -> dict:
    try:
        plan = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise PlanFormatError(f"{path}: cannot read plan JSON ({error})") from error
    if not isinstance(plan, dict) or not SUPPORTED_FORMAT.match(str(plan.get("format_version", ""))):
        raise PlanFormatError(f"{path}: not Terraform plan JSON (format_version 1.x expected)")
    return plan


def summarize(plan: dict, env: str) -> PlanSummary:
    summary = PlanSummary(env=env, errored=bool(plan.get("errored")))
    for change in plan.get("resource_changes") or []:
        if change.get("mode", "managed") != "managed":
            continue
        kind = kind_of(list(change.get("change", {}).get("actions", [])))
        if kind:
            summary.changes[kind].append(change["address"])
    for name, change in sorted((plan.get("output_changes") or {}).items()):
        if change.get("actions") not in (["no-op"], None):
            summary.output_changes.append(name)
    return summary


def reduce(plan: dict) -> dict:
    """The plan without any attribute value: what the summary reads, safe to keep as a CI artifact."""
    return {
        "format_version": plan["format_version"],
        "terraform_version": plan.get("terraform_version", ""),
        "errored": bool(plan.get("errored")),
        "resource_changes": [
            {
                "address": c["address"],
                "mode": c.get("mode", "managed"),
                "type": c.get("type", ""),
                "change": {"actions": list(c.get("change", {}).get("actions", []))},
            }
            for c in plan.get("resource_changes") or []
        ],
        "output_changes": {
            name: {"actions": list(change.get("actions", []))}
            for name, change in (plan.get("output_changes") or {}).items()
        },
    }


def render_section(summary: PlanSummary) -> str:
    counts = summary.counts
    if summary.errored:
        headline = "plan errored"
    elif summary.has_changes:
        headline = ", ".join(f"{counts[kind]} to {kind}" for kind in KINDS)
    else:
        headline = "no changes"
    warning = " ⚠️ destroys resources" if summary.destructive else ""
    lines = [f"<details><summary><b>{summary.env}</b>: {headline}{warning}</summary>", ""]
    if summary.destructive:
        lines += [
            f"> [!WARNING]\n> {summary.env} **deletes {counts['delete']} and replaces {counts['replace']}** "
            "resources: check each below (a replaced cache or API loses its data or its URL).",
            "",
        ]
    listed = 0
    for kind in ("replace", "delete", "update", "create"):  # the dangerous ones first
        for address in summary.changes[kind]:
            if listed == MAX_ADDRESSES:
                break
            lines.append(f"- `{kind}` `{address}`")
            listed += 1
    total = sum(counts.values())
    if total > listed:
        lines.append(f"- … and {total - listed} more")
    if summary.output_changes:
        lines.append(f"- outputs changed: {', '.join(f'`{name}`' for name in summary.output_changes)}")
    if not summary.has_changes and not summary.errored:
        lines.append("Infrastructure matches the configuration.")
    lines += ["", "</details>"]
    return "\n".join(lines)


def render(summaries: list[PlanSummary], title: str = "Terraform plan") -> str:
    parts = [MARKER, f"### {title}", ""]
    destructive = [s.env for s in summaries if s.destructive]
    if destructive:
        parts += [f"**⚠️ Deletes or replaces resources in: {', '.join(destructive)}**", ""]
    parts += [render_section(summary) for summary in summaries]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("plans", nargs="*", type=Path, help="plan JSON files (full or reduced)")
    parser.add_argument(
        "--reduce", nargs=2, type=Path, metavar=("PLAN", "OUT"), help="write PLAN without values"
    )
    parser.add_argument(
        "--detailed-exitcode",
        action="store_true",
        help="as terraform plan -detailed-exitcode: 0 no changes, 2 changes, 1 error",
    )
    parser.add_argument("--marker", action="store_true", help="print the comment marker and exit")
    parser.add_argument("--title", default="Terraform plan")
    parser.add_argument("--env", help="environment name (default: from the file name)")
    args = parser.parse_args(argv)
    if args.marker:
        print(MARKER)
        return 0
    try:
        if args.reduce:
            source, out = args.reduce
            out.write_text(json.dumps(reduce(load_plan(source)), indent=1) + "\n")
            return 0
        if not args.plans:
            parser.error("give at least one plan JSON file")
        summaries = [summarize(load_plan(path), args.env or env_of(path)) for path in args.plans]
    except PlanFormatError as error:
        print(f"plan_summary: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(render(summaries, args.title))
    if args.detailed_exitcode:
        if any(s.errored for s in summaries):
            return 1
        return 2 if any(s.has_changes for s in summaries) else 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
