"""The properties of the synthesized stacks that matter: availability, encryption, least privilege, logs that
never hold the token, and a deployment that follows the route table."""

from __future__ import annotations

import dataclasses
import json
import re

import pytest
from cdktf import Testing as CdktfTesting  # not `Testing`: pytest would try to collect it

from classwire import routes
from classwire_infra.code_bucket import LambdaCode, MissingPackageError
from classwire_infra.config import load
from classwire_infra.outputs import REQUIRED_OUTPUTS
from classwire_infra.stack import EMULATED_SERVICES, ClasswireStack
from scripts.stack_outputs import StackOutputs

from .conftest import EMULATOR_ENDPOINT, ENVIRONMENTS, assert_has_resource, blocks_all_public_access

AWS_ENVIRONMENTS = ("dev", "staging", "prod")
CODE = LambdaCode(
    path="../../../dist/placeholder.zip", sha256_base64="47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
)


def one(block: dict[str, dict]) -> dict:
    assert len(block) == 1, list(block)
    return next(iter(block.values()))


def ref_id(reference: str) -> str:
    """`${aws_x.name.attr}` -> `name`."""
    match = re.fullmatch(r"\$\{(?:data\.)?[a-z0-9_]+\.([A-Za-z0-9_-]+)\.[a-z_]+\}", reference)
    assert match, reference
    return match.group(1)


def policy_statements(stack, function: str) -> list[dict]:
    """Every IAM statement attached to one function's role (inline policies, via their documents)."""
    role = next(
        k
        for k, v in stack.resources("aws_iam_role").items()
        if v["name"] == f"classwire-{stack.env}-{function}"
    )
    statements = []
    for policy in stack.resources("aws_iam_role_policy").values():
        if ref_id(policy["role"]) == role:
            document = stack.data("aws_iam_policy_document")[ref_id(policy["policy"])]
            statements.extend(document["statement"])
    return statements


# -- network -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("env", "nat_count"), [("local", 1), ("dev", 1), ("staging", 3), ("prod", 3)])
def test_nat_gateways_follow_the_nat_switch(stacks, env, nat_count):
    stack = stacks[env]
    nats = stack.resources("aws_nat_gateway")
    assert len(nats) == nat_count
    # Each private subnet's default route goes through a NAT gateway; per AZ means each its own.
    private_routes = [r for r in stack.resources("aws_route").values() if "nat_gateway_id" in r]
    assert len(private_routes) == len(load(env).availability_zones)
    assert len({r["nat_gateway_id"] for r in private_routes}) == nat_count


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_subnets_span_the_configured_azs_and_never_assign_public_ips(stacks, env):
    subnets = stacks[env].resources("aws_subnet").values()
    assert {s["availability_zone"] for s in subnets} == set(load(env).availability_zones)
    assert all(s["map_public_ip_on_launch"] is False for s in subnets)
    if env == "prod":
        assert len({s["availability_zone"] for s in subnets}) == 3


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_default_security_group_has_no_rules_and_flow_logs_are_on(stacks, env):
    default_group = one(stacks[env].resources("aws_default_security_group"))
    assert "ingress" not in default_group and "egress" not in default_group
    assert one(stacks[env].resources("aws_flow_log"))["traffic_type"] == "ALL"


# -- cache ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_redis_has_a_replica_in_another_az_and_is_encrypted(stacks, env):
    config = load(env)
    group = one(stacks[env].resources("aws_elasticache_replication_group"))
    assert group["engine"] == "redis" and group["engine_version"].startswith("7.")
    if config.redis_shards:
        # Cluster mode: each shard a primary and its replicas, spread by ElastiCache over the subnets' AZs.
        assert group["cluster_mode"] == "enabled" and "num_cache_clusters" not in group
        assert group["num_node_groups"] == config.redis_shards
        assert group["replicas_per_node_group"] == config.redis_replicas >= 1
        assert config.redis_automatic_failover and len(config.availability_zones) >= 2
    else:
        assert group["num_cache_clusters"] == config.redis_replicas + 1 >= 2
        azs = group["preferred_cache_cluster_azs"]
        assert azs[0] != azs[1], "the first replica must be in another AZ than the primary"
    assert group["at_rest_encryption_enabled"] == "true" and group["kms_key_id"].startswith("${aws_kms_key.")
    assert group["transit_encryption_enabled"] is True
    assert group["automatic_failover_enabled"] is config.redis_automatic_failover
    assert group["multi_az_enabled"] is config.redis_automatic_failover
    assert group["snapshot_retention_limit"] == config.redis_snapshot_retention_days
    assert "auth_token" not in group


def test_prod_runs_in_cluster_mode_with_the_configuration_endpoint_and_an_alarm_set_per_node(stacks):
    stack = stacks["prod"]
    config = load("prod")
    assert config.redis_shards >= 1
    parameters = one(stack.resources("aws_elasticache_parameter_group"))["parameter"]
    assert {"name": "cluster-enabled", "value": "yes"} in parameters
    for function in stack.resources("aws_lambda_function").values():
        variables = function["environment"]["variables"]
        assert variables["CLASSWIRE_REDIS_CLUSTER"] == "True"
        assert "configuration_endpoint_address" in variables["CLASSWIRE_REDIS_URL"]
    nodes = [
        f"classwire-prod-{s:04d}-{n:03d}"
        for s in range(1, config.redis_shards + 1)
        for n in range(1, config.redis_replicas + 2)
    ]
    watched = {
        a["dimensions"]["CacheClusterId"]
        for a in stack.resources("aws_cloudwatch_metric_alarm").values()
        if "CacheClusterId" in (a.get("dimensions") or {})
    }
    assert watched == set(nodes)


@pytest.mark.parametrize("env", ["staging", "prod"])
def test_failover_and_multi_az_are_on_in_staging_and_prod(stacks, env):
    assert_has_resource(
        stacks[env].text,
        "aws_elasticache_replication_group",
        {"automatic_failover_enabled": True, "multi_az_enabled": True, "transit_encryption_enabled": True},
    )


@pytest.mark.parametrize("env", AWS_ENVIRONMENTS)
def test_redis_uses_iam_auth_and_the_default_user_is_switched_off(stacks, env):
    stack = stacks[env]
    users = {u["user_name"]: u for u in stack.resources("aws_elasticache_user").values()}
    app = users[f"classwire-{env}-app"]
    assert app["authentication_mode"]["type"] == "iam" and app["user_id"] == app["user_name"]
    assert users["default"]["access_string"].startswith("off") and users["default"]["user_id"] != "default"
    group = one(stack.resources("aws_elasticache_replication_group"))
    assert len(group["user_group_ids"]) == 1
    # Only clients in the client security group reach 6379.
    ingress = one(stack.resources("aws_vpc_security_group_ingress_rule"))
    assert ingress["from_port"] == ingress["to_port"] == 6379 and "referenced_security_group_id" in ingress
    assert "cidr_ipv4" not in ingress


def test_local_redis_has_no_auth(stacks):
    assert not stacks["local"].resources("aws_elasticache_user")
    assert "user_group_ids" not in one(stacks["local"].resources("aws_elasticache_replication_group"))


# -- functions -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_one_function_per_route_table_entry_from_the_shared_zip(stacks, env):
    config = load(env)
    functions = {f["function_name"]: f for f in stacks[env].resources("aws_lambda_function").values()}
    assert set(functions) == {f"classwire-{env}-{spec.name}" for spec in routes.FUNCTIONS}
    for spec in routes.FUNCTIONS:
        function = functions[f"classwire-{env}-{spec.name}"]
        assert function["handler"] == spec.handler
        assert function["architectures"] == [config.lambda_architecture]
        assert function["runtime"] == config.lambda_runtime
        assert function["memory_size"] == config.lambda_memory_mb
        # One version of the uploaded package, pinned, and the hash the provider compares.
        package_name = ref_id(function["s3_object_version"])
        assert ref_id(function["s3_key"]) == package_name
        package = stacks[env].resources("aws_s3_object")[package_name]
        assert package["source"] == "../../../dist/classwire-lambda-placeholder.zip"
        assert function["source_code_hash"] == package["source_hash"]
        assert "filename" not in function
        assert function["tracing_config"]["mode"] == "Active"
        assert function["kms_key_arn"].startswith("${aws_kms_key.")
        groups = function["vpc_config"]["security_group_ids"]
        assert len(groups) == (2 if spec.uses_redis else 1)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_code_bucket_is_private_versioned_encrypted_and_tls_only(stacks, env):
    stack = stacks[env]
    (bucket_name,) = stack.resources("aws_s3_bucket")
    bucket_id = f"${{aws_s3_bucket.{bucket_name}.id}}"
    block = one(stack.resources("aws_s3_bucket_public_access_block"))
    assert block["bucket"] == bucket_id
    assert blocks_all_public_access(block)
    assert (
        one(stack.resources("aws_s3_bucket_ownership_controls"))["rule"]["object_ownership"]
        == "BucketOwnerEnforced"
    )
    versioning = one(stack.resources("aws_s3_bucket_versioning"))
    assert versioning["versioning_configuration"]["status"] == "Enabled"
    (rule,) = one(stack.resources("aws_s3_bucket_server_side_encryption_configuration"))["rule"]
    default = rule["apply_server_side_encryption_by_default"]
    assert default["sse_algorithm"] == "aws:kms" and default["kms_master_key_id"].startswith("${aws_kms_key.")
    (statement,) = json.loads(one(stack.resources("aws_s3_bucket_policy"))["policy"])["Statement"]
    assert statement["Effect"] == "Deny" and statement["Condition"] == {
        "Bool": {"aws:SecureTransport": "false"}
    }
    lifecycles = stack.resources("aws_s3_bucket_lifecycle_configuration")
    if env == "local":  # the emulator expires nothing; see EnvConfig.replaced_package_days
        assert not lifecycles
    else:
        (lifecycle,) = one(lifecycles)["rule"]
        expiry = lifecycle["noncurrent_version_expiration"][0]["noncurrent_days"]
        assert expiry == load(env).replaced_package_days
    package = one(stack.resources("aws_s3_object"))
    assert package["bucket"] == bucket_id and package["kms_key_id"].startswith("${aws_kms_key.")
    # The package object exists only once versioning is on, so it has the version id the functions pin.
    assert any(d.startswith("aws_s3_bucket_versioning.") for d in package["depends_on"])


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_environment_carries_settings_but_no_credential(stacks, env):
    for function in stacks[env].resources("aws_lambda_function").values():
        variables = function["environment"]["variables"]
        assert variables["CLASSWIRE_REDIS_URL"].startswith("rediss://")
        assert variables["CLASSWIRE_REDIS_AUTH"] == ("none" if env == "local" else "iam")
        assert variables["CLASSWIRE_MANAGEMENT_ENDPOINT"].startswith("https://${aws_apigatewayv2_api.")
        assert not any(re.search(r"PASSWORD|AUTH_TOKEN|SECRET$|KEY$", name) for name in variables)


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_iam_is_scoped_to_this_stack(stacks, env):
    stack = stacks[env]
    for document in stack.data("aws_iam_policy_document").values():
        for statement in document["statement"]:
            assert all(action != "*" and not action.endswith(":*") for action in statement["actions"]), (
                statement
            )
            assert "*" not in statement["resources"], statement
            assert statement.get("effect", "Allow") == "Allow"
    # Managed policies are only AWS's own for VPC ENIs and X-Ray, which have no resource scope.
    attached = {a["policy_arn"] for a in stack.resources("aws_iam_role_policy_attachment").values()}
    assert attached == {
        "arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
        "arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess",
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_manage_connections_is_scoped_to_the_stage_and_verbs_of_the_route_table(stacks, env):
    stack = stacks[env]
    stage = load(env).stage_name
    for spec in routes.FUNCTIONS:
        statements = [
            s for s in policy_statements(stack, spec.name) if "execute-api:ManageConnections" in s["actions"]
        ]
        if not spec.manages_connections:
            assert not statements
            continue
        resources = one({"s": statements[0]})["resources"]
        assert sorted(resources) == sorted(
            f"${{aws_apigatewayv2_api.{ref_id_of_api(stack)}.execution_arn}}/{stage}/{verb}/@connections/*"
            for verb in spec.manages_connections
        )
    # Whichever function posts the round with an `end` closes the class after it (README, "Batching").
    for spec in (routes.CONNECT, routes.DISCONNECT, routes.MESSAGE):
        assert spec.manages_connections == ("POST", "DELETE")


def ref_id_of_api(stack) -> str:
    return next(iter(stack.resources("aws_apigatewayv2_api")))


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_only_the_authorizer_reads_the_secret_and_only_redis_users_connect(stacks, env):
    stack = stacks[env]
    for spec in routes.FUNCTIONS:
        actions = {a for s in policy_statements(stack, spec.name) for a in s["actions"]}
        assert ("secretsmanager:GetSecretValue" in actions) == (
            spec.reads_jwt_secret and load(env).jwt_uses_secret
        )
        assert ("elasticache:Connect" in actions) == (spec.uses_redis and load(env).redis_iam_auth)
    if env != "local":
        connect = next(
            s for s in policy_statements(stack, "message") if s["actions"] == ["elasticache:Connect"]
        )
        assert len(connect["resources"]) == 2  # the replication group and the IAM user


# -- logs ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_every_log_group_has_retention_and_encryption(stacks, env):
    groups = stacks[env].resources("aws_cloudwatch_log_group").values()
    assert len(groups) == len(routes.FUNCTIONS) + 2  # + API access log + VPC flow log
    for group in groups:
        assert group["retention_in_days"] == load(env).log_retention_days
        assert group["kms_key_id"].startswith("${aws_kms_key.")
    for function in stacks[env].resources("aws_lambda_function").values():
        assert function["logging_config"]["log_group"].startswith("${aws_cloudwatch_log_group.functions_")
        # JSON, so that the levels apply: no platform start/report lines; application lines (EMF) stay.
        assert {
            k: function["logging_config"][k]
            for k in ("log_format", "system_log_level", "application_log_level")
        } == {
            "log_format": "JSON",
            "system_log_level": "WARN",
            "application_log_level": "INFO",
        }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_access_log_is_json_without_the_query_string_or_token(stacks, env):
    stage = one(stacks[env].resources("aws_apigatewayv2_stage"))
    log_format = json.loads(stage["access_log_settings"]["format"])
    assert {"requestId", "connectionId", "routeKey", "eventType", "status", "integrationError"} <= set(
        log_format
    )
    text = stage["access_log_settings"]["format"].lower()
    for forbidden in ("querystring", "token", "$request", "$input", "requestoverride", "identity.user"):
        assert forbidden not in text
    settings = stage["default_route_settings"]
    assert settings["throttling_rate_limit"] == load(env).throttling_rate_limit
    assert settings["throttling_burst_limit"] == load(env).throttling_burst_limit
    assert settings["data_trace_enabled"] is False


# -- API -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_api_is_built_from_the_route_table(stacks, env):
    stack = stacks[env]
    api = one(stack.resources("aws_apigatewayv2_api"))
    assert api["protocol_type"] == "WEBSOCKET"
    assert api["route_selection_expression"] == routes.ROUTE_SELECTION_EXPRESSION
    api_routes = {r["route_key"]: r for r in stack.resources("aws_apigatewayv2_route").values()}
    assert set(api_routes) == {r.key for r in routes.ROUTES}
    integrations = stack.resources("aws_apigatewayv2_integration")
    for route in routes.ROUTES:
        api_route = api_routes[route.key]
        integration = integrations[ref_id(api_route["target"].removeprefix("integrations/"))]
        assert integration["integration_uri"].startswith(
            f"${{aws_lambda_function.functions_{route.function.name}_"
        )
        assert integration["integration_type"] == "AWS_PROXY"
        assert api_route["authorization_type"] == ("CUSTOM" if route.authorized else "NONE")
        assert (api_route.get("route_response_selection_expression") == "$default") == route.two_way
    responses = stack.resources("aws_apigatewayv2_route_response").values()
    assert len(responses) == sum(r.two_way for r in routes.ROUTES)
    assert all(r["route_response_key"] == "$default" for r in responses)
    authorizer = one(stack.resources("aws_apigatewayv2_authorizer"))
    assert authorizer["authorizer_type"] == "REQUEST"
    assert authorizer["identity_sources"] == [routes.AUTHORIZER_IDENTITY_SOURCE]


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_lambda_permissions_are_scoped_to_this_api(stacks, env):
    permissions = stacks[env].resources("aws_lambda_permission").values()
    assert len(permissions) == len(routes.ROUTES) + 1
    for permission in permissions:
        assert permission["principal"] == "apigateway.amazonaws.com"
        assert permission["source_arn"].startswith("${aws_apigatewayv2_api.")
        assert permission["source_arn"].split("}", 1)[1] in (
            {f"/*/{r.key}" for r in routes.ROUTES}
            | {
                "/authorizers/${aws_apigatewayv2_authorizer."
                + next(iter(stacks[env].resources("aws_apigatewayv2_authorizer")))
                + ".id}"
            }
        )


def test_deployment_is_recreated_before_the_old_one_goes(stacks):
    deployment = one(stacks["prod"].resources("aws_apigatewayv2_deployment"))
    assert deployment["lifecycle"]["create_before_destroy"] is True
    redeployment = deployment["triggers"]["redeployment"]
    assert redeployment.startswith("${sha1(jsonencode([")
    for resource_type in (
        "aws_apigatewayv2_route",
        "aws_apigatewayv2_integration",
        "aws_apigatewayv2_authorizer",
        "aws_apigatewayv2_route_response",
    ):
        for name in stacks["prod"].resources(resource_type):
            assert f"{resource_type}.{name}." in redeployment
    stage = one(stacks["prod"].resources("aws_apigatewayv2_stage"))
    assert ref_id(stage["deployment_id"]) == next(
        iter(stacks["prod"].resources("aws_apigatewayv2_deployment"))
    )


def _synth_dev() -> dict:
    stack = ClasswireStack(CdktfTesting.app(), load("dev"), code=CODE)
    return json.loads(CdktfTesting.synth(stack))


def _triggers(synthesized: dict) -> dict:
    return one(synthesized["resource"]["aws_apigatewayv2_deployment"])["triggers"]


@pytest.fixture(scope="module")
def dev_triggers() -> dict:
    return _triggers(_synth_dev())


@pytest.mark.parametrize(
    "changed_routes",
    [
        pytest.param(
            (*routes.ROUTES, routes.Route("raise_hand", routes.MESSAGE, two_way=True)), id="route added"
        ),
        pytest.param(tuple(r for r in routes.ROUTES if r.key != "who"), id="route removed"),
        pytest.param(
            tuple(
                routes.Route(r.key, r.function, two_way=False, authorized=r.authorized)
                if r.key == "ping"
                else r
                for r in routes.ROUTES
            ),
            id="route made one-way",
        ),
    ],
)
def test_deployment_trigger_changes_when_a_route_changes(monkeypatch, dev_triggers, changed_routes):
    monkeypatch.setattr(routes, "ROUTES", changed_routes)
    triggers = _triggers(_synth_dev())
    assert triggers["route_table"] != dev_triggers["route_table"]
    assert triggers["redeployment"] != dev_triggers["redeployment"]


def test_deployment_trigger_is_stable_across_synths(dev_triggers):
    assert _triggers(_synth_dev()) == dev_triggers


def test_custom_domain_is_optional_and_regional():
    from classwire_infra.config import CustomDomain

    config = __import__("dataclasses").replace(
        load("prod"),
        custom_domain=CustomDomain("ws.example.edu", "arn:aws:acm:us-east-1:111122223333:certificate/abc"),
    )
    synthesized = CdktfTesting.synth(ClasswireStack(CdktfTesting.app(), config, code=CODE))
    assert_has_resource(
        synthesized,
        "aws_apigatewayv2_domain_name",
        {
            "domain_name": "ws.example.edu",
            "domain_name_configuration": {
                "endpoint_type": "REGIONAL",
                "security_policy": "TLS_1_2",
                "certificate_arn": "arn:aws:acm:us-east-1:111122223333:certificate/abc",
            },
        },
    )
    parsed = json.loads(synthesized)
    assert len(parsed["resource"]["aws_apigatewayv2_api_mapping"]) == 1
    assert parsed["output"]["websocket_url"]["value"] == "wss://ws.example.edu"
    assert "custom_domain_target" in parsed["output"]


# -- observability, encryption, state, provider ----------------------------------------------------------


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_alarms_go_to_the_encrypted_topic(stacks, env):
    stack = stacks[env]
    topic = one(stack.resources("aws_sns_topic"))
    assert topic["kms_master_key_id"].startswith("${aws_kms_key.")
    alarms = stack.resources("aws_cloudwatch_metric_alarm").values()
    metrics = {a["metric_name"] for a in alarms}
    assert {
        "IntegrationError",
        "Errors",
        "Throttles",
        "EngineCPUUtilization",
        "DatabaseMemoryUsagePercentage",
        "ReplicationLag",
        "ErrorPortAllocation",
    } <= metrics
    assert all(a["alarm_actions"] == [a["ok_actions"][0]] for a in alarms)
    dashboard = json.loads(one(stack.resources("aws_cloudwatch_dashboard"))["dashboard_body"])
    titles = " ".join(w["properties"]["title"] for w in dashboard["widgets"])
    for word in (
        "Connections",
        "Lambda errors",
        "duration",
        "throttles",
        "Redis engine CPU",
        "memory",
        "Redis connections",
        "replication lag",
        "NAT",
        "delivery lag",
        "Members behind",
        "Replays",
    ):
        assert word.lower() in titles.lower()
    # Delivery telemetry: the handlers' EMF metrics, aggregated under the one dimension `service`.
    own = {tuple(m) for w in dashboard["widgets"] for m in w["properties"]["metrics"] if m[0] == "Classwire"}
    assert own == {
        ("Classwire", name, "service", "classwire")
        for name in ("MemberLagMs", "MembersBehind", "Replays", "Resends")
    }
    key = one(stack.resources("aws_kms_key"))
    assert key["enable_key_rotation"] is True


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_state_backend_per_environment(stacks, env):
    terraform = stacks[env].json["terraform"]
    assert terraform["required_providers"]["aws"]["version"] == "~> 5.99"
    if env == "local":
        assert terraform["backend"] == {"local": {"path": "terraform.tfstate"}}
    else:
        s3 = terraform["backend"]["s3"]
        assert s3["use_lockfile"] is True and s3["encrypt"] is True
        assert s3["key"] == f"classwire/{env}/terraform.tfstate"
        assert "dynamodb_table" not in s3


def test_emulator_variant_points_every_service_at_the_endpoint(stacks):
    emulated, dev = stacks["emulator"], stacks["dev"]
    provider = emulated.json["provider"]["aws"][0]
    # The account id comes from the emulator's STS (see stack.py): ARNs then carry it, as in AWS.
    assert provider["skip_credentials_validation"] is True and provider["skip_requesting_account_id"] is False
    assert provider["skip_metadata_api_check"] == "true" and provider["s3_use_path_style"] is True
    endpoints = provider["endpoints"][0]
    assert set(endpoints) == {s.rstrip("_") for s in EMULATED_SERVICES}
    assert set(endpoints.values()) == {EMULATOR_ENDPOINT}
    assert emulated.json["terraform"]["backend"] == {"local": {"path": "terraform.tfstate"}}
    assert "endpoints" not in dev.json["provider"]["aws"][0]
    # Same shape as dev: same resources.
    assert {t: len(b) for t, b in emulated.json["resource"].items()} == {
        t: len(b) for t, b in dev.json["resource"].items()
    }
    # Every resource type the stack uses is served by one of the endpoints.
    services = {t.split("_")[1] for t in emulated.json["resource"]} - {
        "default",
        "eip",
        "flow",
        "internet",
        "nat",
        "route",
        "subnet",
        "vpc",
        "security",
    }
    assert services <= {
        "apigatewayv2",
        "cloudwatch",
        "elasticache",
        "iam",
        "kms",
        "lambda",
        "s3",
        "secretsmanager",
        "sns",
    }


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_outputs_are_the_cli_contract(stacks, env):
    assert set(REQUIRED_OUTPUTS) <= set(stacks[env].json["output"])
    # The pipeline's typed view of them has a field for each.
    assert [f.name for f in dataclasses.fields(StackOutputs) if f.name != "extra"] == list(REQUIRED_OUTPUTS)


def test_missing_package_says_how_to_build_it(tmp_path):
    with pytest.raises(MissingPackageError, match=r"run `make build ENV=dev`"):
        LambdaCode.from_zip(tmp_path / "nope.zip", env="dev")
    from classwire_infra import synth

    assert synth.main(["--env", "dev", "--out", str(tmp_path), "--zip", str(tmp_path / "nope.zip")]) == 2


def test_package_hash_is_the_base64_sha256_of_the_bytes(placeholder_zip):
    import base64
    import hashlib

    code = LambdaCode.from_zip(placeholder_zip, relative_to=placeholder_zip.parent)
    assert code.path == placeholder_zip.name
    assert (
        code.sha256_base64 == base64.b64encode(hashlib.sha256(placeholder_zip.read_bytes()).digest()).decode()
    )


def test_the_resource_assertion_fails_when_no_resource_matches(stacks):
    assert_has_resource(stacks["dev"].text, "aws_vpc", {"enable_dns_support": True})
    with pytest.raises(AssertionError, match="no aws_vpc has"):
        assert_has_resource(stacks["dev"].text, "aws_vpc", {"cidr_block": "192.0.2.0/32"})
