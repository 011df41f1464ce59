"""Infrastructure policy over the synthesized dev, staging and prod stacks (issue 5, "Infrastructure policy").

A sweep of every policy and network rule in the Terraform JSON, not of the constructs that made it: a new
construct that grants `*`, opens a port or forgets a log retention fails here without its own test.
"""

from __future__ import annotations

import json
import re

import pytest

from tests.infra.conftest import blocks_all_public_access
from tests.security.conftest import AWS_ENVIRONMENTS

# The one place AWS defines `Resource: "*"` to mean "this resource": a key policy names only its own key.
KEY_POLICY_RESOURCE = "*"
REF = re.compile(r"^\$\{[a-z0-9_]+\.[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*\.?[a-z_]*\}")


def identity_statements(stack) -> list[dict]:
    """Allow statements of every identity policy: the policy documents the roles use, in AWS's spelling."""
    statements = []
    for document in stack.data("aws_iam_policy_document").values():
        for statement in document["statement"]:
            statements.append(
                {
                    "Effect": statement.get("effect", "Allow"),
                    "Action": statement["actions"],
                    "Resource": statement["resources"],
                }
            )
    for policy in stack.resources("aws_iam_role_policy").values():
        if not policy["policy"].startswith("${data.aws_iam_policy_document."):
            statements += json.loads(policy["policy"])["Statement"]
    return statements


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


@pytest.mark.parametrize("env", AWS_ENVIRONMENTS)
def test_no_identity_policy_allows_every_action_or_every_resource(aws_stacks, env, report):
    statements = identity_statements(aws_stacks[env])
    assert statements
    for statement in statements:
        actions, resources = as_list(statement["Action"]), as_list(statement["Resource"])
        assert statement["Effect"] == "Allow", statement  # no Deny juggling: grants are minimal instead
        assert not [a for a in actions if a == "*" or a.endswith(":*")], statement
        assert "*" not in resources, statement
        # Every resource is this stack's own (a reference) or an ARN under one of its references.
        assert all(REF.match(r) for r in resources), statement
    # AWS managed policies: only the two that have no resource scope to give (VPC ENIs, X-Ray segments).
    attached = {a["policy_arn"] for a in aws_stacks[env].resources("aws_iam_role_policy_attachment").values()}
    assert attached <= {
        "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
        "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess",
    }
    report(f"infra policy {env}: {len(statements)} identity statements, none with * action or * resource")


@pytest.mark.parametrize("env", AWS_ENVIRONMENTS)
def test_roles_trust_only_their_aws_service(aws_stacks, env):
    for role in aws_stacks[env].resources("aws_iam_role").values():
        for statement in json.loads(role["assume_role_policy"])["Statement"]:
            assert statement["Action"] == "sts:AssumeRole", statement
            assert set(statement["Principal"]) == {"Service"}, statement
            assert set(as_list(statement["Principal"]["Service"])) <= {
                "lambda.amazonaws.com",
                "vpc-flow-logs.amazonaws.com",
            }, statement


@pytest.mark.parametrize("env", AWS_ENVIRONMENTS)
def test_key_policies_grant_no_one_outside_the_account(aws_stacks, env):
    for key in aws_stacks[env].resources("aws_kms_key").values():
        assert key["enable_key_rotation"] is True
        for statement in json.loads(key["policy"])["Statement"]:
            principal = statement["Principal"]
            assert principal != "*" and principal.get("AWS") != "*", statement
            assert as_list(statement["Resource"]) == [KEY_POLICY_RESOURCE], statement
            if "AWS" in principal:  # the account itself administers its key (AWS's default key policy)
                assert principal["AWS"].endswith(":root}") or principal["AWS"].endswith(":root"), statement
            else:  # a service may use the key only on this account's behalf
                assert "Condition" in statement, statement


@pytest.mark.parametrize("env", AWS_ENVIRONMENTS)
def test_redis_admits_only_the_lambdas_security_group(aws_stacks, env):
    stack = aws_stacks[env]
    ingress = list(stack.resources("aws_vpc_security_group_ingress_rule").values())
    (group_ref,) = [
        f"${{aws_security_group.{name}.id}}"
        for name, group in stack.resources("aws_security_group").items()
        if group["name"] == f"classwire-{env}-redis"
    ]
    (client_ref,) = [
        f"${{aws_security_group.{name}.id}}"
        for name, group in stack.resources("aws_security_group").items()
        if group["name"] == f"classwire-{env}-redis-clients"
    ]
    # The only ingress anywhere: Redis, on 6379, from the security group the Lambdas carry.
    assert [
        (r["security_group_id"], r["referenced_security_group_id"], r["from_port"], r["to_port"])
        for r in ingress
    ] == [(group_ref, client_ref, 6379, 6379)]
    assert not any("cidr_ipv4" in r or "cidr_ipv6" in r for r in ingress)
    # The functions that use Redis carry that group; the authorizer never touches Redis and does not.
    carriers = {
        f["function_name"].rsplit("-", 1)[-1]
        for f in stack.resources("aws_lambda_function").values()
        if client_ref in f["vpc_config"]["security_group_ids"]
    }
    assert carriers == {"connect", "disconnect", "message"}
    for group in stack.resources("aws_security_group").values():
        assert not group.get("ingress"), group  # inline rules would bypass the rule resources above
    for default in stack.resources("aws_default_security_group").values():
        assert not default.get("ingress") and not default.get("egress")
    # Egress to the internet (through NAT) is HTTPS only.
    for rule in stack.resources("aws_vpc_security_group_egress_rule").values():
        if rule.get("cidr_ipv4") == "0.0.0.0/0":
            assert (rule["from_port"], rule["to_port"], rule["ip_protocol"]) == (443, 443, "tcp"), rule


@pytest.mark.parametrize("env", AWS_ENVIRONMENTS)
def test_every_log_group_has_retention_and_its_key(aws_stacks, env):
    groups = aws_stacks[env].resources("aws_cloudwatch_log_group").values()
    assert groups
    for group in groups:
        assert group.get("retention_in_days", 0) > 0, group
        assert group.get("kms_key_id"), group


@pytest.mark.parametrize("env", AWS_ENVIRONMENTS)
def test_nothing_is_public_but_the_websocket_api(aws_stacks, env):
    stack = aws_stacks[env]
    resource_types = set(stack.json["resource"])
    # No function URLs, load balancers or instances: API Gateway is the only way in.
    assert not resource_types & {
        "aws_lambda_function_url",
        "aws_lb",
        "aws_instance",
        "aws_apigatewayv2_vpc_link",
    }
    # Every bucket (the code bucket) blocks public access outright, and no bucket policy allows anyone.
    blocked = {
        block["bucket"]
        for block in stack.resources("aws_s3_bucket_public_access_block").values()
        if blocks_all_public_access(block)
    }
    assert blocked == {f"${{aws_s3_bucket.{name}.id}}" for name in stack.resources("aws_s3_bucket")}
    for policy in stack.resources("aws_s3_bucket_policy").values():
        assert all(s["Effect"] == "Deny" for s in json.loads(policy["policy"])["Statement"]), policy
    for subnet in stack.resources("aws_subnet").values():
        assert subnet.get("map_public_ip_on_launch") is not True, subnet
    private = {
        f"${{aws_subnet.{n}.id}}"
        for n, s in stack.resources("aws_subnet").items()
        if s["tags"]["tier"] == "private"
    }
    for group in stack.resources("aws_elasticache_subnet_group").values():
        assert set(group["subnet_ids"]) <= private
    for function in stack.resources("aws_lambda_function").values():
        assert set(function["vpc_config"]["subnet_ids"]) <= private
    for cache in stack.resources("aws_elasticache_replication_group").values():
        # (The provider types at_rest_encryption_enabled as a string.)
        assert (
            str(cache["transit_encryption_enabled"]).lower()
            == str(cache["at_rest_encryption_enabled"])
            == "true"
        )
    # Only API Gateway may invoke the functions, and only from this API.
    (api_name,) = stack.resources("aws_apigatewayv2_api")
    for permission in stack.resources("aws_lambda_permission").values():
        assert permission["principal"] == "apigateway.amazonaws.com"
        assert permission["source_arn"].startswith(f"${{aws_apigatewayv2_api.{api_name}.execution_arn}}/")
    # Public addresses: one Elastic IP per NAT gateway, nothing else.
    assert len(stack.resources("aws_eip")) == len(stack.resources("aws_nat_gateway"))


@pytest.mark.parametrize("env", AWS_ENVIRONMENTS)
def test_deploy_role_may_write_exactly_the_code_bucket_the_stack_names(aws_stacks, env):
    import tests.pipeline.conftest  # noqa: F401  (puts bootstrap/ on the path)
    from classwire_bootstrap import policies
    from classwire_bootstrap.config import BootstrapConfig

    account = "123456789012"
    bootstrap = BootstrapConfig(github_repository="acme/classwire", account_id=account, environments=(env,))
    (bucket,) = aws_stacks[env].resources("aws_s3_bucket").values()
    name = bucket["bucket"].replace("${data.aws_caller_identity.account.account_id}", account)
    (statement,) = [
        s for s in policies.deploy_policy(bootstrap, env)["Statement"] if s.get("Sid") == "CodeBucket"
    ]
    assert statement["Resource"] == [f"arn:aws:s3:::{name}", f"arn:aws:s3:::{name}/*"]
