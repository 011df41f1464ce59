"""Synthesize one environment's stack to plain Terraform JSON (the cdktf CLI is not needed).

    python -m classwire_infra.synth --env dev     # -> cdktf.out/stacks/classwire-dev/cdk.tf.json
    python -m classwire_infra.synth --env dev --env staging --env prod   # several, in one process
    python -m classwire_infra.synth --env dev --aws-endpoint http://127.0.0.1:5000   # dev's shape, on the emulator

Then `terraform -chdir=cdktf.out/stacks/classwire-<env> init|plan|apply` as with any Terraform code.
The JSON is Terraform's own JSON syntax: it needs neither CDKTF nor this script to plan and apply.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from cdktf import App

from classwire_infra.code_bucket import LambdaCode, MissingPackageError
from classwire_infra.config import ENVIRONMENTS, ConfigError, load
from classwire_infra.paths import CDKTF_OUT, ROOT, stack_dir
from classwire_infra.stack import ClasswireStack


def synth(env: str, *, out: Path, aws_endpoint: str | None = None, zip_file: Path | None = None) -> Path:
    """Write `out/stacks/classwire-<env>/cdk.tf.json` and return that stack directory."""
    config = load(env)
    if aws_endpoint:
        config = config.for_emulator(aws_endpoint)
    directory = stack_dir(config.stack_name, out)
    code = LambdaCode.from_zip(zip_file or ROOT / config.lambda_zip, relative_to=directory, env=env)
    app = App(outdir=str(out), skip_validation=False)
    ClasswireStack(app, config, code=code)
    app.synth()
    return directory


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--env",
        required=True,
        action="append",
        choices=ENVIRONMENTS,
        help="repeat for several: one process pays the bindings' start once",
    )
    parser.add_argument("--out", type=Path, default=CDKTF_OUT, help="output directory (cdktf.out)")
    parser.add_argument(
        "--aws-endpoint", help="point every provider endpoint at this emulator URL; local state"
    )
    parser.add_argument("--zip", type=Path, help="the Lambda package (default: the config's dist/ zip)")
    args = parser.parse_args(argv)
    if args.zip and len(args.env) > 1:
        parser.error("--zip names one environment's package: give one --env with it")
    for env in args.env:
        started = time.monotonic()
        try:
            directory = synth(env, out=args.out.resolve(), aws_endpoint=args.aws_endpoint, zip_file=args.zip)
        except (ConfigError, MissingPackageError) as error:
            print(f"synth: {error}", file=sys.stderr)
            return 2
        print(f"synthesized {directory / 'cdk.tf.json'} in {time.monotonic() - started:.1f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
