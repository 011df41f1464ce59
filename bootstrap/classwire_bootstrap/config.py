"""What a bootstrap of one AWS account needs to know: the GitHub repository, the account, its environments.

The state bucket, key and region of each environment come from `terraform/classwire_infra/config.py`, the one
place the stacks' backends are named, so the bucket created here is the bucket the stack's backend uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from classwire_infra.config import PROJECT, StateBackend, load

GITHUB_OIDC_HOST = "token.actions.githubusercontent.com"
STS_AUDIENCE = "sts.amazonaws.com"
DEPLOYABLE = ("dev", "staging", "prod")


class BootstrapConfigError(ValueError):
    """The bootstrap config is invalid; the message says which field."""


@dataclass(frozen=True)
class BootstrapConfig:
    # "<org>/<repo>": the only repository whose workflows may assume the roles.
    github_repository: str
    account_id: str
    # The environments this account hosts (usually one: an account per environment).
    environments: tuple[str, ...]
    # The branch deploy.yml and drift.yml run on; its plan jobs use the read-only plan role.
    main_branch: str = "main"
    partition: str = "aws"
    # False when the account already has GitHub's OIDC provider (there can be one per URL per account).
    create_oidc_provider: bool = True
    # Old state versions kept this long: enough to roll state back after a bad apply.
    noncurrent_state_version_days: int = 90
    # The deploy role's session may outlast an hour: creating a Multi-AZ replication group takes a while.
    deploy_session_seconds: int = 7200

    def __post_init__(self) -> None:
        problems = []
        if not re.fullmatch(
            r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}", self.github_repository
        ):
            problems.append(f"github_repository {self.github_repository!r} must be <org>/<repo>")
        if not re.fullmatch(r"\d{12}", self.account_id):
            problems.append(f"account_id {self.account_id!r} must be 12 digits")
        if not self.environments or len(set(self.environments)) != len(self.environments):
            problems.append("environments: name at least one, each once")
        if any(env not in DEPLOYABLE for env in self.environments):
            problems.append(f"environments must be among {DEPLOYABLE}, got {self.environments}")
        if not re.fullmatch(r"[A-Za-z0-9._/-]{1,200}", self.main_branch):
            problems.append(f"main_branch {self.main_branch!r} is not a branch name")
        if self.partition not in ("aws", "aws-us-gov", "aws-cn"):
            problems.append(f"partition {self.partition!r} is not an AWS partition")
        if not 1 <= self.noncurrent_state_version_days <= 3650:
            problems.append("noncurrent_state_version_days must be 1..3650")
        if not 3600 <= self.deploy_session_seconds <= 43200:
            problems.append("deploy_session_seconds must be 3600..43200")
        if not problems and len({self.state(env).region for env in self.environments}) != 1:
            problems.append("environments of one account must keep their state in one region")
        if problems:
            raise BootstrapConfigError("bootstrap config is invalid:\n  - " + "\n  - ".join(problems))

    def state(self, env: str) -> StateBackend:
        state = load(env).state
        assert state is not None, f"{env} has an S3 backend"  # ensured by EnvConfig's validation
        return state

    @property
    def region(self) -> str:
        return self.state(self.environments[0]).region

    @property
    def oidc_provider_arn(self) -> str:
        return f"arn:{self.partition}:iam::{self.account_id}:oidc-provider/{GITHUB_OIDC_HOST}"

    # The `sub` claims GitHub puts in the OIDC token (docs: "Example subject claims").
    def environment_subject(self, env: str) -> str:
        return f"repo:{self.github_repository}:environment:{env}"

    @property
    def plan_subjects(self) -> tuple[str, ...]:
        return (
            f"repo:{self.github_repository}:pull_request",
            f"repo:{self.github_repository}:ref:refs/heads/{self.main_branch}",
        )

    # Outside the stack's `classwire-<env>-*` names, which the deploy role may change: it cannot edit itself.
    @staticmethod
    def deploy_role_name(env: str) -> str:
        return f"{PROJECT}-ci-{env}-deploy"

    @staticmethod
    def plan_role_name(env: str) -> str:
        return f"{PROJECT}-ci-{env}-plan"
