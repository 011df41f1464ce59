"""Synthesize the bootstrap of one AWS account (plain Terraform JSON, local state next to it).

    python bootstrap/synth_bootstrap.py --repo my-org/classwire --account 123456789012 --env dev
    terraform -chdir=bootstrap/accounts/123456789012/stacks/classwire-bootstrap init && ... apply

`make bootstrap REPO=... ACCOUNT=... ENVS="dev"` does all three. docs/deploying.md explains the set-up.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from classwire_bootstrap.config import DEPLOYABLE, BootstrapConfig, BootstrapConfigError
from classwire_bootstrap.stack import synth
from classwire_infra.paths import ROOT


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--repo", required=True, help="<org>/<repo> whose workflows may assume the roles")
    parser.add_argument("--account", required=True, help="the AWS account id (12 digits)")
    parser.add_argument(
        "--env", action="append", required=True, choices=DEPLOYABLE, help="repeat per environment"
    )
    parser.add_argument("--branch", default="main", help="the branch deploy.yml runs on (main)")
    parser.add_argument(
        "--existing-oidc-provider",
        action="store_true",
        help="the account already has GitHub's OIDC provider: use it instead of creating it",
    )
    parser.add_argument("--out", type=Path, help="output directory (bootstrap/accounts/ACCOUNT)")
    args = parser.parse_args(argv)
    try:
        config = BootstrapConfig(
            github_repository=args.repo,
            account_id=args.account,
            environments=tuple(args.env),
            main_branch=args.branch,
            create_oidc_provider=not args.existing_oidc_provider,
        )
    except BootstrapConfigError as error:
        print(f"bootstrap: {error}", file=sys.stderr)
        return 2
    directory = synth(config, (args.out or ROOT / "bootstrap" / "accounts" / config.account_id).resolve())
    print(f"synthesized {directory / 'cdk.tf.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
