"""Functions: one Lambda per entry of `classwire.routes.FUNCTIONS`, all from the same package (one version
of the CodeBucket's object), each with its own log group and its own least-privilege role."""

from __future__ import annotations

import json
from dataclasses import replace

from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktf_cdktf_provider_aws.data_aws_iam_policy_document import (
    DataAwsIamPolicyDocument,
    DataAwsIamPolicyDocumentStatement,
)
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.iam_role_policy_attachment import IamRolePolicyAttachment
from cdktf_cdktf_provider_aws.lambda_function import (
    LambdaFunction,
    LambdaFunctionEnvironment,
    LambdaFunctionLoggingConfig,
    LambdaFunctionTracingConfig,
    LambdaFunctionVpcConfig,
)
from cdktf_cdktf_provider_aws.security_group import SecurityGroup
from cdktf_cdktf_provider_aws.vpc_security_group_egress_rule import VpcSecurityGroupEgressRule
from constructs import Construct

from classwire import routes
from classwire.settings import Settings

from .code_bucket import DeployedCode


class Functions(Construct):
    """Props: code, sizing, network placement, runtime settings, the resources a function may touch.

    Attributes: `functions` and `roles` by route-table name (`authorizer`, `connect`, ...),
    `log_group_names`, `security_group_ids`. `allow_connection_management(...)` and
    `use_management_endpoint(...)` are called once the API exists.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        prefix: str,
        code: DeployedCode,
        runtime: str,
        architecture: str,
        memory_mb: int,
        timeout_seconds: int,
        log_retention_days: int,
        kms_key_arn: str,
        vpc_id: str,
        subnet_ids: list[str],
        redis_client_security_group_id: str,
        settings: Settings,
        redis_connect_arns: list[str],
        jwt_secret_arn: str | None,
    ) -> None:
        super().__init__(scope, id_)
        self._settings = settings
        # Every function leaves the VPC only for HTTPS (@connections, STS, Secrets Manager, JWKS) through NAT.
        https_out = SecurityGroup(
            self,
            "https_egress",
            name=f"{prefix}-lambda-https-egress",
            vpc_id=vpc_id,
            description=f"{prefix} Lambdas: HTTPS out through NAT, nothing in",
            tags={"Name": f"{prefix}-lambda-https-egress"},
        )
        VpcSecurityGroupEgressRule(
            self,
            "https_egress_rule",
            security_group_id=https_out.id,
            description="HTTPS to AWS APIs and the identity provider through NAT",
            ip_protocol="tcp",
            from_port=443,
            to_port=443,
            cidr_ipv4="0.0.0.0/0",
        )

        self.functions: dict[str, LambdaFunction] = {}
        self.roles: dict[str, IamRole] = {}
        self.log_group_names: dict[str, str] = {}
        self.security_group_ids: dict[str, list[str]] = {}
        for spec in routes.FUNCTIONS:
            name = f"{prefix}-{spec.name}"
            log_group = CloudwatchLogGroup(
                self,
                f"{spec.name}_log_group",
                name=f"/aws/lambda/{name}",
                retention_in_days=log_retention_days,
                kms_key_id=kms_key_arn,
            )
            role = IamRole(
                self,
                f"{spec.name}_role",
                name=name,
                description=f"{name}: {spec.description}"[:1000],
                assume_role_policy=json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Principal": {"Service": "lambda.amazonaws.com"},
                                "Action": "sts:AssumeRole",
                            }
                        ],
                    }
                ),
            )
            statements = [
                DataAwsIamPolicyDocumentStatement(
                    sid="WriteOwnLogs",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                    resources=[f"{log_group.arn}:*"],
                ),
                DataAwsIamPolicyDocumentStatement(
                    # The environment variables and the JWT secret are encrypted with the environment's key.
                    sid="DecryptWithEnvironmentKey",
                    actions=["kms:Decrypt"],
                    resources=[kms_key_arn],
                ),
            ]
            if spec.reads_jwt_secret and jwt_secret_arn is not None:
                statements.append(
                    DataAwsIamPolicyDocumentStatement(
                        sid="ReadJwtSecret",
                        actions=["secretsmanager:GetSecretValue"],
                        resources=[jwt_secret_arn],
                    )
                )
            if spec.uses_redis and redis_connect_arns:
                statements.append(
                    DataAwsIamPolicyDocumentStatement(
                        # ElastiCache IAM auth: the replication group and the IAM-authenticated user, nothing else.
                        sid="ConnectToRedisAsAppUser",
                        actions=["elasticache:Connect"],
                        resources=redis_connect_arns,
                    )
                )
            document = DataAwsIamPolicyDocument(self, f"{spec.name}_policy_document", statement=statements)
            policy = IamRolePolicy(
                self, f"{spec.name}_policy", name=f"{name}-runtime", role=role.id, policy=document.json
            )
            # AWS's managed policies for what has no resource scope: VPC network interfaces and X-Ray segments.
            attachments = [
                IamRolePolicyAttachment(
                    self,
                    f"{spec.name}_vpc_access",
                    role=role.name,
                    policy_arn="arn:aws:iam::aws:policy/service-role/AWSLambdaVPCAccessExecutionRole",
                ),
                IamRolePolicyAttachment(
                    self,
                    f"{spec.name}_xray",
                    role=role.name,
                    policy_arn="arn:aws:iam::aws:policy/AWSXRayDaemonWriteAccess",
                ),
            ]
            groups = [https_out.id] + ([redis_client_security_group_id] if spec.uses_redis else [])
            function = LambdaFunction(
                self,
                spec.name,
                function_name=name,
                description=spec.description,
                role=role.arn,
                handler=spec.handler,
                runtime=runtime,
                architectures=[architecture],
                memory_size=memory_mb,
                timeout=timeout_seconds,
                s3_bucket=code.s3_bucket,
                s3_key=code.s3_key,
                s3_object_version=code.s3_object_version,
                source_code_hash=code.sha256_base64,
                environment=LambdaFunctionEnvironment(variables=settings.to_env()),
                kms_key_arn=kms_key_arn,
                vpc_config=LambdaFunctionVpcConfig(subnet_ids=subnet_ids, security_group_ids=groups),
                tracing_config=LambdaFunctionTracingConfig(mode="Active"),
                logging_config=LambdaFunctionLoggingConfig(
                    log_format="JSON",
                    log_group=log_group.name,
                    # The platform's start and report lines are INFO: at WARN they are not written (its
                    # own metrics stay). The application level stays INFO: Lambda counts a JSON line
                    # without a level, as every EMF metric line is, as INFO.
                    system_log_level="WARN",
                    application_log_level="INFO",
                ),
                depends_on=[log_group, policy, *attachments],
            )
            self.functions[spec.name] = function
            self.roles[spec.name] = role
            self.log_group_names[spec.name] = log_group.name
            self.security_group_ids[spec.name] = groups

    def name_of(self, function: routes.Function) -> str:
        return self.functions[function.name].function_name

    def allow_connection_management(self, *, api_execution_arn: str, stage: str) -> None:
        """Grant each function exactly the `@connections` verbs the route table gives it, on this stage only."""
        for spec in routes.FUNCTIONS:
            if not spec.manages_connections:
                continue
            document = DataAwsIamPolicyDocument(
                self,
                f"{spec.name}_connections_policy_document",
                statement=[
                    DataAwsIamPolicyDocumentStatement(
                        sid="ManageOwnApiConnections",
                        actions=["execute-api:ManageConnections"],
                        resources=[
                            f"{api_execution_arn}/{stage}/{verb}/@connections/*"
                            for verb in spec.manages_connections
                        ],
                    )
                ],
            )
            IamRolePolicy(
                self,
                f"{spec.name}_connections_policy",
                name=f"{spec.name}-manage-connections",
                role=self.roles[spec.name].id,
                policy=document.json,
            )

    def use_management_endpoint(self, endpoint: str) -> None:
        """Point the functions at the stage's own @connections URL (a custom domain has none)."""
        self._settings = replace(self._settings, management_endpoint=endpoint)
        for function in self.functions.values():
            function.put_environment(variables=self._settings.to_env())
