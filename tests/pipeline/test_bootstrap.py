"""The bootstrap stack: trust conditions, least-privilege policies, the state bucket's protections, a clean
`terraform validate`, and idempotence (applied twice to the AWS emulator, the second plan is empty)."""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess

import pytest

from classwire_bootstrap import policies
from classwire_bootstrap.config import BootstrapConfig, BootstrapConfigError
from classwire_bootstrap.stack import synth
from classwire_infra.paths import ROOT

REPO = "acme/classwire"
ACCOUNT = "123456789012"
OIDC = "token.actions.githubusercontent.com"


@pytest.fixture(scope="module")
def config() -> BootstrapConfig:
    return BootstrapConfig(github_repository=REPO, account_id=ACCOUNT, environments=("dev", "staging"))


@pytest.fixture(scope="module")
def stack(config, tmp_path_factory):
    directory = synth(config, tmp_path_factory.mktemp("bootstrap"))
    return directory, json.loads((directory / "cdk.tf.json").read_text())


@pytest.fixture(scope="module")
def terraform_env(tmp_path_factory) -> dict[str, str]:
    rc = tmp_path_factory.mktemp("tf") / "terraformrc"
    subprocess.run([str(ROOT / "scripts" / "terraform-cli-config"), str(rc)], check=True, capture_output=True)
    return {**os.environ, "TF_CLI_CONFIG_FILE": str(rc), "CHECKPOINT_DISABLE": "1", "TF_IN_AUTOMATION": "1"}


def resources(stack, kind: str) -> dict[str, dict]:
    return stack[1]["resource"].get(kind, {})


def roles(stack) -> dict[str, dict]:
    return {r["name"]: r for r in resources(stack, "aws_iam_role").values()}


def inline(stack, role: str) -> dict:
    return next(
        json.loads(p["policy"]) for p in resources(stack, "aws_iam_role_policy").values() if p["name"] == role
    )


def statements(document: dict) -> list[dict]:
    return document["Statement"]


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_deploy_roles_trust_only_their_github_environment(stack):
    for env in ("dev", "staging"):
        trust = json.loads(roles(stack)[f"classwire-ci-{env}-deploy"]["assume_role_policy"])
        (statement,) = statements(trust)
        assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
        assert statement["Principal"] == {"Federated": f"arn:aws:iam::{ACCOUNT}:oidc-provider/{OIDC}"}
        assert statement["Condition"] == {
            "StringEquals": {
                f"{OIDC}:aud": "sts.amazonaws.com",
                f"{OIDC}:sub": f"repo:{REPO}:environment:{env}",
            }
        }


def test_plan_roles_trust_pull_requests_and_main_only(stack):
    trust = json.loads(roles(stack)["classwire-ci-dev-plan"]["assume_role_policy"])
    (statement,) = statements(trust)
    assert set(statement["Condition"]) == {"StringEquals"}  # never StringLike with wildcards
    assert statement["Condition"]["StringEquals"][f"{OIDC}:aud"] == "sts.amazonaws.com"
    assert statement["Condition"]["StringEquals"][f"{OIDC}:sub"] == [
        f"repo:{REPO}:pull_request",
        f"repo:{REPO}:ref:refs/heads/main",
    ]


def test_no_wildcard_actions_and_no_iam_escalation(stack, config):
    for role in roles(stack):
        for statement in statements(inline(stack, role)):
            for action in as_list(statement["Action"]):
                if statement["Effect"] == "Allow":
                    _service, _, name = action.partition(":")
                    assert action != "*" and name != "*" and "*" not in name, f"{role}: {action}"
    for env in config.environments:
        deploy = inline(stack, f"classwire-ci-{env}-deploy")
        own_arn = f"arn:aws:iam::{ACCOUNT}:role/classwire-ci-{env}-deploy"
        for statement in statements(deploy):
            if any(a.startswith("iam:") for a in as_list(statement["Action"])):
                # The deploy role may change the stack's roles, never itself nor the plan role.
                assert not any(fnmatch.fnmatch(own_arn, r) for r in as_list(statement["Resource"]))
                assert not any(
                    fnmatch.fnmatch(own_arn.replace("deploy", "plan"), r)
                    for r in as_list(statement["Resource"])
                )
        attach = next(s for s in statements(deploy) if "iam:AttachRolePolicy" in s["Action"])
        assert "AdministratorAccess" not in json.dumps(attach) and "ArnEquals" in attach["Condition"]


def test_plan_role_reads_state_but_cannot_lock_write_or_read_secrets(stack):
    plan = inline(stack, "classwire-ci-dev-plan")
    allowed = {a for s in statements(plan) if s["Effect"] == "Allow" for a in s["Action"]}
    assert allowed == {"s3:ListBucket", "s3:GetObject"}
    denied = {a for s in statements(plan) if s["Effect"] == "Deny" for a in s["Action"]}
    assert {"secretsmanager:GetSecretValue", "kms:Decrypt", "s3:PutObject"} <= denied
    deploy = inline(stack, "classwire-ci-dev-deploy")
    state = next(s for s in statements(deploy) if s["Sid"] == "StateObjects")
    assert state["Resource"] == [
        "arn:aws:s3:::classwire-terraform-state-dev/classwire/dev/terraform.tfstate",
        "arn:aws:s3:::classwire-terraform-state-dev/classwire/dev/terraform.tfstate.tflock",
    ]


def test_state_bucket_is_versioned_encrypted_private_and_tls_only(stack, config):
    buckets = {b["bucket"]: b for b in resources(stack, "aws_s3_bucket").values()}
    assert set(buckets) == {config.state(env).bucket for env in ("dev", "staging")}
    assert all(b["lifecycle"]["prevent_destroy"] and not b["force_destroy"] for b in buckets.values())
    assert all(
        v["versioning_configuration"]["status"] == "Enabled"
        for v in resources(stack, "aws_s3_bucket_versioning").values()
    )
    assert all(
        e["rule"][0]["apply_server_side_encryption_by_default"]["sse_algorithm"] == "AES256"
        for e in resources(stack, "aws_s3_bucket_server_side_encryption_configuration").values()
    )
    for block in resources(stack, "aws_s3_bucket_public_access_block").values():
        assert all(
            block[k]
            for k in (
                "block_public_acls",
                "block_public_policy",
                "ignore_public_acls",
                "restrict_public_buckets",
            )
        )
    for policy in resources(stack, "aws_s3_bucket_policy").values():
        tls = statements(json.loads(policy["policy"]))[0]
        assert tls["Effect"] == "Deny" and tls["Action"] == "s3:*"
        assert tls["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    (lifecycle, _) = resources(stack, "aws_s3_bucket_lifecycle_configuration").values()
    assert lifecycle["rule"][0]["noncurrent_version_expiration"][0]["noncurrent_days"] == 90


def test_oidc_provider_is_github_for_sts(stack):
    (provider,) = resources(stack, "aws_iam_openid_connect_provider").values()
    assert provider["url"] == f"https://{OIDC}" and provider["client_id_list"] == ["sts.amazonaws.com"]
    assert stack[1]["terraform"]["backend"] == {"local": {"path": "terraform.tfstate"}}
    assert stack[1]["provider"]["aws"][0]["allowed_account_ids"] == [ACCOUNT]


def test_config_is_validated():
    with pytest.raises(BootstrapConfigError, match="org>/<repo>"):
        BootstrapConfig(github_repository="classwire", account_id=ACCOUNT, environments=("dev",))
    with pytest.raises(BootstrapConfigError, match="12 digits"):
        BootstrapConfig(github_repository=REPO, account_id="1234", environments=("dev",))
    with pytest.raises(BootstrapConfigError, match="environments"):
        BootstrapConfig(github_repository=REPO, account_id=ACCOUNT, environments=("local",))
    assert policies.trust_policy(BootstrapConfig(REPO, ACCOUNT, ("prod",)), ("s",))["Statement"][0][
        "Condition"
    ]


def test_terraform_validate(stack, terraform_env):
    directory = stack[0]
    for command in (["init", "-input=false", "-no-color", "-backend=false"], ["validate", "-no-color"]):
        run = subprocess.run(
            ["terraform", *command],
            cwd=directory,
            env=terraform_env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


@pytest.mark.slow
def test_applies_to_the_emulator_and_a_second_plan_is_empty(tmp_path, terraform_env):
    from localcloud.emulator import AwsEmulator

    config = BootstrapConfig(github_repository=REPO, account_id=ACCOUNT, environments=("dev",))
    with AwsEmulator(load_managed_policies=True) as aws:
        directory = synth(config, tmp_path, aws_endpoint=aws.endpoint)
        environment = {**terraform_env, **aws.client_environment}

        def terraform(*args: str) -> subprocess.CompletedProcess:
            return subprocess.run(
                ["terraform", *args, "-no-color"],
                cwd=directory,
                env=environment,
                capture_output=True,
                text=True,
                timeout=600,
            )

        for args in (("init", "-input=false"), ("apply", "-auto-approve", "-input=false")):
            run = terraform(*args)
            assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        again = terraform("plan", "-detailed-exitcode", "-input=false")
        assert again.returncode == 0, again.stdout[-3000:]
        bucket = aws.client("s3").get_bucket_versioning(Bucket=config.state("dev").bucket)
        assert bucket["Status"] == "Enabled"
