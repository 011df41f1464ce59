"""BootstrapStack: per AWS account, the state bucket of each environment it hosts, GitHub's OIDC provider,
and per environment a deploy role and a read-only plan role. Local state (it creates the remote one)."""

from __future__ import annotations

import json
from pathlib import Path

from cdktf import App, LocalBackend, TerraformOutput, TerraformStack
from cdktf_cdktf_provider_aws.data_aws_iam_openid_connect_provider import DataAwsIamOpenidConnectProvider
from cdktf_cdktf_provider_aws.iam_openid_connect_provider import IamOpenidConnectProvider
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from constructs import Construct

from classwire_infra.private_bucket import PrivateBucket
from classwire_infra.provider import aws_provider

from . import policies
from .config import GITHUB_OIDC_HOST, PROJECT, STS_AUDIENCE, BootstrapConfig

STACK_NAME = f"{PROJECT}-bootstrap"


class GithubRole(Construct):
    """A role GitHub Actions jobs assume through OIDC, with its policies in code."""

    def __init__(
        self,
        scope: Construct,
        id: str,
        *,
        name: str,
        description: str,
        trust: dict,
        inline: dict,
        managed_policy_arns: tuple[str, ...] = (),
        max_session_seconds: int = 3600,
        depends_on: list | None = None,
    ) -> None:
        super().__init__(scope, id)
        self.role = IamRole(
            self,
            "role",
            name=name,
            description=description,
            assume_role_policy=json.dumps(trust),
            max_session_duration=max_session_seconds,
            depends_on=depends_on,
        )
        IamRolePolicy(self, "policy", role=self.role.name, name=name, policy=json.dumps(inline))
        for index, arn in enumerate(managed_policy_arns):
            IamRolePolicyAttachment(self, f"managed_{index}", role=self.role.name, policy_arn=arn)
        self.arn = self.role.arn


class BootstrapStack(TerraformStack):
    def __init__(self, scope: Construct, config: BootstrapConfig, *, aws_endpoint: str | None = None) -> None:
        super().__init__(scope, STACK_NAME)
        self.config = config
        LocalBackend(self, path="terraform.tfstate")
        aws_provider(
            self,
            region=config.region,
            tags={"project": PROJECT, "managed-by": "classwire-bootstrap"},
            emulator_endpoint=aws_endpoint,  # the tests' emulator (moto)
            emulated_services=("iam", "s3", "sts"),
            allowed_account_ids=[config.account_id],
        )

        if config.create_oidc_provider:
            # No thumbprints: AWS verifies GitHub's certificate through its own trusted CAs.
            provider = IamOpenidConnectProvider(
                self, "github_oidc", url=f"https://{GITHUB_OIDC_HOST}", client_id_list=[STS_AUDIENCE]
            )
            depends = [provider]
        else:
            DataAwsIamOpenidConnectProvider(self, "github_oidc", url=f"https://{GITHUB_OIDC_HOST}")
            depends = []

        read_only = policies.READ_ONLY_POLICY.format(partition=config.partition)
        for env in config.environments:
            state = config.state(env)
            # An environment's Terraform state: SSE-S3, because the plan role reads state without any KMS
            # permission (it is denied kms:Decrypt); never destroyed by Terraform.
            PrivateBucket(
                self,
                f"state_{env}",
                name=state.bucket,
                kms_key_arn=None,
                noncurrent_days=config.noncurrent_state_version_days,
                abort_upload_days=7,
                lifecycle_rule_id="expire-old-state-versions",
                minimum_tls_version="1.2",
                prevent_destroy=True,
            )
            deploy = GithubRole(
                self,
                f"deploy_{env}",
                name=config.deploy_role_name(env),
                description=f"GitHub Actions deploy of {PROJECT}-{env} (GitHub Environment {env} only)",
                trust=policies.trust_policy(config, (config.environment_subject(env),)),
                inline=policies.deploy_policy(config, env),
                managed_policy_arns=(read_only,),
                max_session_seconds=config.deploy_session_seconds,
                depends_on=depends,
            )
            plan = GithubRole(
                self,
                f"plan_{env}",
                name=config.plan_role_name(env),
                description=f"GitHub Actions read-only plan of {PROJECT}-{env} (pull requests, main)",
                trust=policies.trust_policy(config, config.plan_subjects),
                inline=policies.plan_policy(config, env),
                managed_policy_arns=(read_only,),
                depends_on=depends,
            )
            TerraformOutput(self, f"deploy_role_arn_{env}", value=deploy.arn)
            TerraformOutput(self, f"plan_role_arn_{env}", value=plan.arn)
            TerraformOutput(self, f"state_bucket_{env}", value=state.bucket)


def synth(config: BootstrapConfig, out: Path, *, aws_endpoint: str | None = None) -> Path:
    """Write `out/stacks/classwire-bootstrap/cdk.tf.json` and return that directory."""
    app = App(outdir=str(out), skip_validation=False)
    BootstrapStack(app, config, aws_endpoint=aws_endpoint)
    app.synth()
    return out / "stacks" / STACK_NAME
