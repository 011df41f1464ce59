"""Each gap localcloud/moto_shim.py closes, asserted through boto3 against a real moto server.

Every test of a gap fails against plain moto 5.2.5 (CLASSWIRE_EMULATOR_WITHOUT_SHIM=1, see conftest.py).
"""

from __future__ import annotations

import functools
import io
import json
import zipfile

import pytest
from botocore.exceptions import ClientError

from localcloud import moto_shim
from localcloud.emulator import ACCOUNT_ID

AZS = ["us-east-1a", "us-east-1b", "us-east-1c"]


def error_code(excinfo: pytest.ExceptionInfo[ClientError]) -> str:
    return excinfo.value.response["Error"]["Code"]


@pytest.fixture
def network(aws):
    """A VPC with a private subnet per AZ and a security group, as the stack's cache uses."""
    ec2 = aws.client("ec2")
    vpc_id = ec2.create_vpc(CidrBlock="10.20.0.0/16")["Vpc"]["VpcId"]
    subnet_ids = [
        ec2.create_subnet(VpcId=vpc_id, CidrBlock=f"10.20.{i}.0/24", AvailabilityZone=az)["Subnet"][
            "SubnetId"
        ]
        for i, az in enumerate(AZS)
    ]
    group_id = ec2.create_security_group(GroupName="redis", Description="redis", VpcId=vpc_id)["GroupId"]
    return {"subnet_ids": subnet_ids, "security_group_id": group_id}


@pytest.fixture
def elasticache(aws):
    return aws.client("elasticache")


def create_cache(elasticache, network, group_id="classwire", clusters=2, **extra):
    """A subnet group and a cluster-mode-disabled replication group shaped like the stack's."""
    subnet_group = f"{group_id}-subnets"
    elasticache.create_cache_subnet_group(
        CacheSubnetGroupName=subnet_group,
        CacheSubnetGroupDescription="private subnets",
        SubnetIds=network["subnet_ids"],
    )
    return elasticache.create_replication_group(
        ReplicationGroupId=group_id,
        ReplicationGroupDescription="classwire",
        Engine="redis",
        EngineVersion="7.1",
        CacheNodeType="cache.t4g.micro",
        NumCacheClusters=clusters,
        PreferredCacheClusterAZs=AZS[:clusters],
        CacheSubnetGroupName=subnet_group,
        SecurityGroupIds=[network["security_group_id"]],
        TransitEncryptionEnabled=True,
        AtRestEncryptionEnabled=True,
        **extra,
    )["ReplicationGroup"]


# Gap (a): replication-group member clusters are not registered as cache clusters.
def test_replication_group_members_are_cache_clusters(elasticache, network):
    group = create_cache(elasticache, network)

    for member_id in group["MemberClusters"]:
        [cluster] = elasticache.describe_cache_clusters(CacheClusterId=member_id, ShowCacheNodeInfo=True)[
            "CacheClusters"
        ]
        assert cluster["ReplicationGroupId"] == "classwire"
        assert cluster["CacheNodeType"] == "cache.t4g.micro"
        assert cluster["Engine"] == "redis"
        assert cluster["EngineVersion"] == "7.1"
        assert cluster["CacheSubnetGroupName"] == "classwire-subnets"
        # What the provider reads back for the group comes from its first member cluster.
        assert cluster["SecurityGroups"] == [
            {"SecurityGroupId": network["security_group_id"], "Status": "active"}
        ]
        assert cluster["CacheParameterGroup"]["CacheParameterGroupName"] == "default.redis7"
        assert cluster["AtRestEncryptionEnabled"] is True
        assert cluster["TransitEncryptionEnabled"] is True
        assert cluster["TransitEncryptionMode"] == "required"
        assert cluster["AutoMinorVersionUpgrade"] is True
    listed = {c["CacheClusterId"] for c in elasticache.describe_cache_clusters()["CacheClusters"]}
    assert listed == set(group["MemberClusters"])


# Gap (b): NumCacheClusters is ignored when cluster mode is off.
def test_num_cache_clusters_sets_the_number_of_nodes(elasticache, network):
    group = create_cache(elasticache, network, clusters=3)

    assert group["MemberClusters"] == ["classwire-001", "classwire-002", "classwire-003"]
    members = group["NodeGroups"][0]["NodeGroupMembers"]
    assert [m["CurrentRole"] for m in members] == ["primary", "replica", "replica"]
    assert [m["PreferredAvailabilityZone"] for m in members] == AZS
    assert group["NodeGroups"][0]["ReaderEndpoint"]["Address"].startswith("replica.classwire.")


# Gap (c): DeleteCacheSubnetGroup is missing.
def test_cache_subnet_group_can_be_deleted_once_unused(elasticache, network):
    create_cache(elasticache, network)
    with pytest.raises(ClientError) as in_use:
        elasticache.delete_cache_subnet_group(CacheSubnetGroupName="classwire-subnets")
    assert error_code(in_use) == "CacheSubnetGroupInUse"

    elasticache.delete_replication_group(ReplicationGroupId="classwire")
    elasticache.delete_cache_subnet_group(CacheSubnetGroupName="classwire-subnets")

    with pytest.raises(ClientError) as gone:
        elasticache.describe_cache_subnet_groups(CacheSubnetGroupName="classwire-subnets")
    assert error_code(gone) == "CacheSubnetGroupNotFoundFault"


# Gap (d): a deleted replication group stays in `deleting`.
def test_deleted_replication_group_disappears_with_its_clusters(elasticache, network):
    create_cache(elasticache, network)

    deleted = elasticache.delete_replication_group(ReplicationGroupId="classwire")["ReplicationGroup"]

    assert deleted["Status"] == "deleting"
    with pytest.raises(ClientError) as gone:
        elasticache.describe_replication_groups(ReplicationGroupId="classwire")
    assert error_code(gone) == "ReplicationGroupNotFoundFault"
    assert elasticache.describe_cache_clusters()["CacheClusters"] == []


def test_parameter_group_keeps_user_parameters_until_deleted(elasticache, network):
    created = elasticache.create_cache_parameter_group(
        CacheParameterGroupName="classwire-redis7",
        CacheParameterGroupFamily="redis7",
        Description="classwire",
        Tags=[{"Key": "app", "Value": "classwire"}],
    )["CacheParameterGroup"]
    assert created["ARN"].endswith(":parametergroup:classwire-redis7")
    elasticache.modify_cache_parameter_group(
        CacheParameterGroupName="classwire-redis7",
        ParameterNameValues=[
            {"ParameterName": "maxmemory-policy", "ParameterValue": "noeviction"},
            {"ParameterName": "timeout", "ParameterValue": "300"},
        ],
    )
    elasticache.reset_cache_parameter_group(
        CacheParameterGroupName="classwire-redis7", ParameterNameValues=[{"ParameterName": "timeout"}]
    )

    [group] = elasticache.describe_cache_parameter_groups(CacheParameterGroupName="classwire-redis7")[
        "CacheParameterGroups"
    ]
    assert group["CacheParameterGroupFamily"] == "redis7"
    parameters = elasticache.describe_cache_parameters(
        CacheParameterGroupName="classwire-redis7", Source="user"
    )
    assert [(p["ParameterName"], p["ParameterValue"]) for p in parameters["Parameters"]] == [
        ("maxmemory-policy", "noeviction")
    ]
    assert elasticache.list_tags_for_resource(ResourceName=created["ARN"])["TagList"] == [
        {"Key": "app", "Value": "classwire"}
    ]

    create_cache(elasticache, network, CacheParameterGroupName="classwire-redis7")
    with pytest.raises(ClientError) as in_use:
        elasticache.delete_cache_parameter_group(CacheParameterGroupName="classwire-redis7")
    assert error_code(in_use) == "InvalidCacheParameterGroupState"
    elasticache.delete_replication_group(ReplicationGroupId="classwire")
    elasticache.delete_cache_parameter_group(CacheParameterGroupName="classwire-redis7")
    with pytest.raises(ClientError) as gone:
        elasticache.describe_cache_parameter_groups(CacheParameterGroupName="classwire-redis7")
    assert error_code(gone) == "CacheParameterGroupNotFound"


def test_user_group_holds_users_and_guards_its_replication_group(elasticache, network):
    elasticache.create_user(
        UserId="classwire-default",
        UserName="default",
        Engine="redis",
        AccessString="off -@all",
        NoPasswordRequired=True,
    )
    elasticache.create_user(
        UserId="classwire-app",
        UserName="classwire-app",
        Engine="redis",
        AccessString="on ~classroom:* +@all",
        AuthenticationMode={"Type": "iam"},
    )
    with pytest.raises(ClientError) as no_default:
        elasticache.create_user_group(UserGroupId="classwire", Engine="redis", UserIds=["classwire-app"])
    assert error_code(no_default) == "DefaultUserRequired"

    created = elasticache.create_user_group(
        UserGroupId="classwire",
        Engine="redis",
        UserIds=["classwire-default", "classwire-app"],
        Tags=[{"Key": "app", "Value": "classwire"}],
    )
    assert created["Status"] == "active"
    assert created["ARN"].endswith(":usergroup:classwire")
    assert elasticache.list_tags_for_resource(ResourceName=created["ARN"])["TagList"] == [
        {"Key": "app", "Value": "classwire"}
    ]
    create_cache(elasticache, network, UserGroupIds=["classwire"])
    [group] = elasticache.describe_user_groups(UserGroupId="classwire")["UserGroups"]
    assert group["ReplicationGroups"] == ["classwire"]
    assert sorted(group["UserIds"]) == ["classwire-app", "classwire-default"]

    with pytest.raises(ClientError) as in_use:
        elasticache.delete_user_group(UserGroupId="classwire")
    assert error_code(in_use) == "InvalidUserGroupState"
    elasticache.delete_replication_group(ReplicationGroupId="classwire")
    elasticache.modify_user_group(UserGroupId="classwire", UserIdsToRemove=["classwire-app"])
    assert elasticache.describe_user_groups(UserGroupId="classwire")["UserGroups"][0]["UserIds"] == [
        "classwire-default"
    ]

    assert elasticache.delete_user_group(UserGroupId="classwire")["Status"] == "deleting"
    with pytest.raises(ClientError) as gone:
        elasticache.describe_user_groups(UserGroupId="classwire")
    assert error_code(gone) == "UserGroupNotFound"


@pytest.fixture
def websocket_api(aws):
    apigw = aws.client("apigatewayv2")
    api_id = apigw.create_api(
        Name="classwire", ProtocolType="WEBSOCKET", RouteSelectionExpression="$request.body.action"
    )["ApiId"]
    integration_id = apigw.create_integration(
        ApiId=api_id,
        IntegrationType="AWS_PROXY",
        IntegrationMethod="POST",
        IntegrationUri="arn:aws:apigateway:us-east-1:lambda:path/2015-03-31/functions/"
        "arn:aws:lambda:us-east-1:123456789012:function:classwire-send/invocations",
    )["IntegrationId"]
    route_id = apigw.create_route(ApiId=api_id, RouteKey="send", Target=f"integrations/{integration_id}")[
        "RouteId"
    ]
    return apigw, api_id, integration_id, route_id


def test_websocket_deployment_moves_stage_and_stays_while_in_use(websocket_api):
    apigw, api_id, _, _ = websocket_api

    first = apigw.create_deployment(ApiId=api_id, Description="first")
    assert first["DeploymentStatus"] == "DEPLOYED"
    apigw.create_stage(ApiId=api_id, StageName="dev", DeploymentId=first["DeploymentId"])
    assert apigw.get_stage(ApiId=api_id, StageName="dev")["DeploymentId"] == first["DeploymentId"]
    assert apigw.get_deployment(ApiId=api_id, DeploymentId=first["DeploymentId"])["Description"] == "first"

    # Routes changed: a new deployment is created first, the stage moves to it, then the old one goes.
    second = apigw.create_deployment(ApiId=api_id)
    with pytest.raises(ClientError) as in_use:
        apigw.delete_deployment(ApiId=api_id, DeploymentId=first["DeploymentId"])
    assert error_code(in_use) == "BadRequestException"
    apigw.update_stage(ApiId=api_id, StageName="dev", DeploymentId=second["DeploymentId"])
    apigw.delete_deployment(ApiId=api_id, DeploymentId=first["DeploymentId"])

    assert apigw.get_stage(ApiId=api_id, StageName="dev")["DeploymentId"] == second["DeploymentId"]
    assert [d["DeploymentId"] for d in apigw.get_deployments(ApiId=api_id)["Items"]] == [
        second["DeploymentId"]
    ]
    with pytest.raises(ClientError) as gone:
        apigw.get_deployment(ApiId=api_id, DeploymentId=first["DeploymentId"])
    assert error_code(gone) == "NotFoundException"


def test_stage_update_keeps_throttling_and_access_logs(websocket_api):
    apigw, api_id, _, _ = websocket_api
    deployment_id = apigw.create_deployment(ApiId=api_id)["DeploymentId"]
    apigw.create_stage(ApiId=api_id, StageName="dev", DeploymentId=deployment_id)

    apigw.update_stage(
        ApiId=api_id,
        StageName="dev",
        DefaultRouteSettings={"ThrottlingBurstLimit": 100, "ThrottlingRateLimit": 50.0},
        AccessLogSettings={
            "DestinationArn": "arn:aws:logs:us-east-1:123456789012:log-group:access",
            "Format": "{}",
        },
    )

    stage = apigw.get_stage(ApiId=api_id, StageName="dev")
    assert stage["DefaultRouteSettings"]["ThrottlingBurstLimit"] == 100
    assert stage["AccessLogSettings"]["Format"] == "{}"
    assert stage["DeploymentId"] == deployment_id


def test_routes_and_integrations_leave_out_what_was_never_set(websocket_api):
    apigw, api_id, integration_id, route_id = websocket_api

    route = apigw.get_route(ApiId=api_id, RouteId=route_id)
    integration = apigw.get_integration(ApiId=api_id, IntegrationId=integration_id)

    assert not {"AuthorizationScopes", "RequestModels", "RequestParameters"} & route.keys()
    assert not {"RequestParameters", "RequestTemplates", "ResponseParameters"} & integration.keys()


def create_function(aws, name, **extra):
    """A minimal arm64 Python function with its own role."""
    role = aws.client("iam").create_role(
        RoleName=name,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Action": "sts:AssumeRole",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("handler.py", "def handler(event, context):\n    return None\n")
    return aws.client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.12",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": code.getvalue()},
        Architectures=["arm64"],
        **extra,
    )


def test_lambda_function_keeps_logging_and_dead_letter_config(aws):
    awslambda = aws.client("lambda")
    create = functools.partial(create_function, aws)
    create(
        "classwire-send",
        LoggingConfig={"LogFormat": "JSON", "LogGroup": "/classwire/dev/send"},
        DeadLetterConfig={"TargetArn": "arn:aws:sqs:us-east-1:123456789012:classwire-dlq"},
    )
    create("classwire-plain")

    send = awslambda.get_function_configuration(FunctionName="classwire-send")
    assert send["LoggingConfig"] == {"LogFormat": "JSON", "LogGroup": "/classwire/dev/send"}
    assert send["DeadLetterConfig"] == {"TargetArn": "arn:aws:sqs:us-east-1:123456789012:classwire-dlq"}
    plain = awslambda.get_function_configuration(FunctionName="classwire-plain")
    assert plain["LoggingConfig"] == {"LogFormat": "Text", "LogGroup": "/aws/lambda/classwire-plain"}
    assert "DeadLetterConfig" not in plain

    awslambda.update_function_configuration(
        FunctionName="classwire-plain", LoggingConfig={"LogFormat": "JSON"}
    )
    assert (
        awslambda.get_function_configuration(FunctionName="classwire-plain")["LoggingConfig"]["LogFormat"]
        == "JSON"
    )


def test_a_statement_id_in_use_is_refused_and_a_resent_statement_is_not_added_twice(aws):
    awslambda = aws.client("lambda")
    create_function(aws, "classwire-message")
    route = {
        "FunctionName": "classwire-message",
        "StatementId": "AllowApiGatewayRouteSync",
        "Action": "lambda:InvokeFunction",
        "Principal": "apigateway.amazonaws.com",
        "SourceArn": "arn:aws:execute-api:us-east-1:123456789012:abc123/*/sync",
    }
    first = awslambda.add_permission(**route)["Statement"]
    # The same request again (a client resending what it sent): the statement that is there answers it.
    assert awslambda.add_permission(**route)["Statement"] == first
    # Another statement under that id: AWS's conflict.
    with pytest.raises(ClientError) as conflict:
        awslambda.add_permission(**{**route, "SourceArn": route["SourceArn"].replace("sync", "send")})
    assert error_code(conflict) == "ResourceConflictException"
    statements = json.loads(awslambda.get_policy(FunctionName="classwire-message")["Policy"])["Statement"]
    assert [s["Sid"] for s in statements] == ["AllowApiGatewayRouteSync"]

    awslambda.remove_permission(FunctionName="classwire-message", StatementId="AllowApiGatewayRouteSync")
    with pytest.raises(ClientError) as gone:
        awslambda.get_policy(FunctionName="classwire-message")
    assert error_code(gone) == "ResourceNotFoundException"


def test_rule_referencing_a_security_group_keeps_its_description(aws, network):
    ec2 = aws.client("ec2")
    vpc_id = ec2.describe_security_groups(GroupIds=[network["security_group_id"]])["SecurityGroups"][0][
        "VpcId"
    ]
    clients = ec2.create_security_group(GroupName="clients", Description="clients", VpcId=vpc_id)["GroupId"]

    ec2.authorize_security_group_ingress(
        GroupId=network["security_group_id"],
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 6379,
                "ToPort": 6379,
                "UserIdGroupPairs": [{"GroupId": clients, "Description": "Redis from the functions"}],
            }
        ],
    )

    rules = ec2.describe_security_group_rules(
        Filters=[{"Name": "group-id", "Values": [network["security_group_id"]]}]
    )["SecurityGroupRules"]
    [rule] = [r for r in rules if not r["IsEgress"]]
    assert rule["Description"] == "Redis from the functions"
    # Not a gap: like AWS, moto names the referenced group's account apart from its id. The provider shows it
    # as "ACCOUNT/sg-..." (a cross-account reference) only when it does not know its own account id, which
    # is why the emulator's provider config asks STS for it (terraform/classwire_infra/stack.py).
    assert rule["ReferencedGroupInfo"] == {"GroupId": clients, "UserId": ACCOUNT_ID}


def test_a_resent_revoke_of_a_rule_is_answered_as_the_first_and_an_unknown_rule_still_refused(aws, network):
    ec2 = aws.client("ec2")
    group = network["security_group_id"]
    ec2.authorize_security_group_egress(
        GroupId=group,
        IpPermissions=[
            {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443, "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}
        ],
    )
    rules = ec2.describe_security_group_rules(Filters=[{"Name": "group-id", "Values": [group]}])[
        "SecurityGroupRules"
    ]
    [rule_id] = [r["SecurityGroupRuleId"] for r in rules if r["IsEgress"] and r.get("FromPort") == 443]
    ec2.revoke_security_group_egress(GroupId=group, SecurityGroupRuleIds=[rule_id])
    assert ec2.revoke_security_group_egress(GroupId=group, SecurityGroupRuleIds=[rule_id])["Return"]
    with pytest.raises(ClientError) as refused:
        ec2.revoke_security_group_egress(GroupId=group, SecurityGroupRuleIds=["sgr-00000000000000000"])
    assert error_code(refused) == "InvalidPermission.NotFound"


def test_tls_only_bucket_policy_admits_writes_but_other_denials_hold(aws):
    s3 = aws.client("s3")
    s3.create_bucket(Bucket="classwire-code")
    bucket = "arn:aws:s3:::classwire-code"
    tls_only = {
        "Effect": "Deny",
        "Principal": "*",
        "Action": "s3:*",
        "Resource": [bucket, f"{bucket}/*"],
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
    }
    s3.put_bucket_policy(
        Bucket="classwire-code", Policy=json.dumps({"Version": "2012-10-17", "Statement": [tls_only]})
    )
    s3.put_object(Bucket="classwire-code", Key="lambda/a.zip", Body=b"zip")
    assert s3.get_object(Bucket="classwire-code", Key="lambda/a.zip")["Body"].read() == b"zip"

    # A Deny without that condition still denies, as moto evaluates it.
    deny_writes = {"Effect": "Deny", "Principal": "*", "Action": "s3:PutObject", "Resource": f"{bucket}/*"}
    s3.put_bucket_policy(
        Bucket="classwire-code",
        Policy=json.dumps({"Version": "2012-10-17", "Statement": [tls_only, deny_writes]}),
    )
    with pytest.raises(ClientError) as refused:
        s3.put_object(Bucket="classwire-code", Key="lambda/b.zip", Body=b"zip")
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403


def test_shim_refuses_a_moto_it_was_not_written_for(monkeypatch):
    import moto

    monkeypatch.setattr(moto, "__version__", "9.9.9")
    monkeypatch.setattr(moto_shim, "_applied", False)

    with pytest.raises(RuntimeError, match="re-check each gap"):
        moto_shim.apply()
