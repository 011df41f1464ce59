"""Figures of the reliability runs: each test records what it measured; the session writes the report.

Figures go to a JSON results file as they are recorded (so a crashed run still leaves them), and at the
end of the session `write_report` turns them into a Markdown table: `reports/reliability.md` for the
full run (`make prove`), `reports/tmp/reliability-ci.md` (not committed) at the CI size.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

from classwire_infra.paths import ROOT
from tests.prove.sizes import Sizes


def results_path(sizes: Sizes) -> Path:
    if sizes.name == "full":
        return ROOT / "reports" / "reliability.json"
    return ROOT / "reports" / "tmp" / "reliability-ci.json"


def report_path(sizes: Sizes) -> Path:
    if sizes.name == "full":
        return ROOT / "reports" / "reliability.md"
    return ROOT / "reports" / "tmp" / "reliability-ci.md"


class Figures:
    """`figures.record("chaos", "acks", 1234, note="...")` prints the figure and appends it to the file."""

    def __init__(self, sizes: Sizes):
        self.sizes = sizes
        self.path = results_path(sizes)

    def reset(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(
            json.dumps({"sizes": self.sizes.as_dict(), "started": _now(), "figures": []}) + "\n"
        )

    def record(self, test: str, name: str, value: object, unit: str = "", note: str = "") -> None:
        print(
            f"  [{test}] {name} = {value}{(' ' + unit) if unit else ''}{('  (' + note + ')') if note else ''}"
        )
        data = self._load()
        data["figures"].append({"test": test, "name": name, "value": value, "unit": unit, "note": note})
        self.path.write_text(json.dumps(data, indent=1) + "\n")

    def outcome(self, test: str, passed: bool) -> None:
        data = self._load()
        data.setdefault("outcomes", {})[test] = "passed" if passed else "FAILED"
        self.path.write_text(json.dumps(data, indent=1) + "\n")

    def _load(self) -> dict:
        if not self.path.exists():
            self.reset()
        return json.loads(self.path.read_text())

    def write_report(self) -> Path | None:
        if not self.path.exists():
            return None
        data = self._load()
        if not data["figures"] and not data.get("outcomes"):
            return None
        lines = [
            "# classwire reliability report",
            "",
            f"Written by `tests/prove` ({'`make prove`, full size' if self.sizes.name == 'full' else 'CI size'})"
            f" on {_now()}; run started {data.get('started', '?')}.",
            "",
            "## Machine",
            "",
            *(f"- {fact}" for fact in _machine_facts()),
            "",
            "## Sizes used",
            "",
            "| Setting | Value |",
            "|---|---|",
            *(f"| `{key}` | {value} |" for key, value in data["sizes"].items()),
            "",
            "## Outcomes",
            "",
            "| Test | Result |",
            "|---|---|",
            *(f"| `{test}` | {result} |" for test, result in sorted(data.get("outcomes", {}).items())),
            "",
            "## Figures",
            "",
            "| Test | Figure | Value | Note |",
            "|---|---|---|---|",
        ]
        for figure in data["figures"]:
            value = figure["value"]
            if isinstance(value, float):
                value = f"{value:.1f}"
            unit = f" {figure['unit']}" if figure["unit"] else ""
            lines.append(f"| {figure['test']} | {figure['name']} | {value}{unit} | {figure['note']} |")
        lines += [
            "",
            'The guarantee these figures test is stated once, in README.md, "Delivery guarantee".',
            "",
        ]
        path = report_path(self.sizes)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines))
        return path


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _machine_facts() -> list[str]:
    facts = [
        f"{platform.system()} {platform.release()} {platform.machine()}",
        f"CPU: {_cpu_model()}, {os.cpu_count()} logical cores (shared with other test runs)",
        f"memory: {_memory()}",
        f"Python {platform.python_version()} ({sys.implementation.name})",
    ]
    try:
        version = subprocess.run(
            ["redis-server", "--version"], capture_output=True, text=True, timeout=5
        ).stdout
        facts.append(version.strip())
    except OSError:
        pass
    facts.append(
        "everything on one machine: redis-server primary + replica behind the primary-endpoint proxy, "
        "the local gateway (its own process) with Lambda worker processes, and the clients"
    )
    return facts


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) // 1024} MB"
    except OSError:
        pass
    return "unknown"
