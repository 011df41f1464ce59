"""The command line: `python -m cost --env prod --profile cost/profiles/mid_size_school.toml` (`make cost`);
`--profile all` prices every profile in cost/profiles/ and writes the profiles x services summary."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import cost
from classwire_infra.config import ENVIRONMENTS
from cost.estimate import estimate
from cost.levers import levers
from cost.prices import DEFAULT_PRICES, load_prices
from cost.profile import DEFAULT_PROFILE, load_profile
from cost.render import RESULTS_DIR, relative, write_results
from cost.stack_facts import load_stack
from cost.summary import profile_paths, summarize, write_summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m cost", description=cost.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--env", required=True, choices=ENVIRONMENTS)
    parser.add_argument(
        "--profile", default="", help=f"usage profile (default {relative(DEFAULT_PROFILE)}), or `all`"
    )
    parser.add_argument("--prices", type=Path, default=DEFAULT_PRICES)
    parser.add_argument("--out", type=Path, default=RESULTS_DIR, help="results directory (cost/results)")
    args = parser.parse_args(argv)
    paths = (
        profile_paths()
        if args.profile == "all"
        else [Path(args.profile) if args.profile else DEFAULT_PROFILE]
    )
    try:
        prices, stack = load_prices(args.prices), load_stack(args.env)
        for profile_path in paths:
            profile = load_profile(profile_path)
            result = estimate(stack, profile, prices)
            markdown, svg = write_results(
                args.env, result, levers(stack, profile, prices), prices, profile_path, args.out
            )
            if len(paths) == 1:
                print(markdown.read_text(encoding="utf-8"))
            print(f"wrote {relative(markdown)} and {relative(svg)}", file=sys.stderr)
        if len(paths) > 1:
            markdown, svg = write_summary(args.env, summarize(stack, prices, paths), args.out)
            print(markdown.read_text(encoding="utf-8"))
            print(f"wrote {relative(markdown)} and {relative(svg)}", file=sys.stderr)
    except (OSError, ValueError, KeyError, subprocess.CalledProcessError) as error:
        print(f"cost: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
