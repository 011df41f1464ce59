"""ClasswireStack: the whole system of one environment, wired in the order a request meets it.

browser ─wss─▶ WebSocketApi ─▶ Functions (in the Network's private subnets) ─▶ Cache
                                    ├─ @connections through the Network's NAT
                                    └─ code: one version of the CodeBucket's package
Observability watches all of it; Encryption's key encrypts its logs, secret, topic, cache and code.
"""

from __future__ import annotations

from dataclasses import replace

from cdktf import TerraformOutput, TerraformStack
from cdktf_cdktf_provider_aws.data_aws_caller_identity import DataAwsCallerIdentity
from cdktf_cdktf_provider_aws.data_aws_partition import DataAwsPartition
from cdktf_cdktf_provider_aws.secretsmanager_secret import SecretsmanagerSecret
from constructs import Construct

from classwire.settings import RedisSettings, Settings

from .cache import Cache
from .code_bucket import CodeBucket, LambdaCode
from .config import PROJECT, EnvConfig
from .encryption import Encryption
from .functions import Functions
from .network import Network
from .observability import Observability
from .outputs import REQUIRED_OUTPUTS
from .provider import aws_provider
from .state import configure_state
from .websocket_api import WebSocketApi

# Every service the stack calls, pointed at the emulator when there is one.
EMULATED_SERVICES = (
    "apigatewayv2",
    "cloudwatch",
    "ec2",
    "elasticache",
    "iam",
    "kms",
    "lambda_",
    "logs",
    "secretsmanager",
    "sns",
    "sts",
    "s3",
)


class ClasswireStack(TerraformStack):
    def __init__(self, scope: Construct, config: EnvConfig, *, code: LambdaCode) -> None:
        super().__init__(scope, config.stack_name)
        self.config = config
        aws_provider(
            self,
            region=config.region,
            tags={"project": PROJECT, "environment": config.name, "managed-by": "cdktf"},
            emulator_endpoint=config.aws_endpoint,
            emulated_services=EMULATED_SERVICES,
        )
        configure_state(self, config.state)
        # No `required_version`: checkov's terraform_json parser cannot read it. The S3 backend's
        # `use_lockfile` already refuses Terraform < 1.10 with a clear error.

        account_id = DataAwsCallerIdentity(self, "account").account_id
        partition = DataAwsPartition(self, "partition").partition
        prefix = config.prefix

        encryption = Encryption(
            self,
            "encryption",
            prefix=prefix,
            region=config.region,
            account_id=account_id,
            partition=partition,
        )
        network = Network(
            self,
            "network",
            prefix=prefix,
            availability_zones=config.availability_zones,
            vpc_cidr=config.vpc_cidr,
            private_subnet_cidrs=config.private_subnet_cidrs(),
            public_subnet_cidrs=config.public_subnet_cidrs(),
            nat_mode=config.nat_mode,
            log_retention_days=config.log_retention_days,
            kms_key_arn=encryption.key_arn,
        )
        cache = Cache(
            self,
            "cache",
            prefix=prefix,
            vpc_id=network.vpc_id,
            subnet_ids=network.private_subnet_ids,
            availability_zones=config.availability_zones,
            node_type=config.redis_node_type,
            replicas=config.redis_replicas,
            shards=config.redis_shards,
            automatic_failover=config.redis_automatic_failover,
            engine_version=config.redis_engine_version,
            parameter_family=config.redis_parameter_family,
            maxmemory_policy=config.redis_maxmemory_policy,
            snapshot_retention_days=config.redis_snapshot_retention_days,
            snapshot_window=config.redis_snapshot_window,
            maintenance_window=config.redis_maintenance_window,
            iam_auth=config.redis_iam_auth,
            kms_key_arn=encryption.key_arn,
        )

        # HMAC keys live in Secrets Manager. The stack creates the secret without a value: the identity
        # provider team (or the local tooling, after apply) puts it, so no key ever passes through Terraform.
        jwt_secret_arn: str | None = None
        if config.jwt_uses_secret:
            jwt_secret_arn = SecretsmanagerSecret(
                self,
                "jwt_secret",
                name=config.jwt_secret_name,
                kms_key_id=encryption.key_arn,
                description=f"{prefix}: the HMAC key the authorizer verifies tokens with (value set outside Terraform)",
                recovery_window_in_days=config.jwt_secret_recovery_days,
            ).arn

        clustered = config.redis_shards > 0
        redis = RedisSettings(url=cache.url, auth="none", cluster=clustered)
        if config.redis_iam_auth:
            assert cache.user_id is not None, "the cache creates its IAM user whenever redis_iam_auth is on"
            redis = RedisSettings(
                url=cache.url, auth="iam", user=cache.user_id, cache_name=config.prefix, cluster=clustered
            )
        settings = Settings(
            redis=redis,
            jwt=replace(config.jwt, secret_arn=jwt_secret_arn or ""),
            limits=config.limits,
            fanout=config.fanout,
            service_name=PROJECT,
            log_level=config.log_level,
        ).validate()
        code_bucket = CodeBucket(
            self,
            "code_bucket",
            name=config.code_bucket_name(account_id),
            code=code,
            kms_key_arn=encryption.key_arn,
            replaced_package_days=config.replaced_package_days,
        )
        functions = Functions(
            self,
            "functions",
            prefix=prefix,
            code=code_bucket.package,
            runtime=config.lambda_runtime,
            architecture=config.lambda_architecture,
            memory_mb=config.lambda_memory_mb,
            timeout_seconds=config.lambda_timeout_seconds,
            log_retention_days=config.log_retention_days,
            kms_key_arn=encryption.key_arn,
            vpc_id=network.vpc_id,
            subnet_ids=network.private_subnet_ids,
            redis_client_security_group_id=cache.client_security_group_id,
            settings=settings,
            redis_connect_arns=[cache.replication_group_arn, cache.user_arn] if cache.user_arn else [],
            jwt_secret_arn=jwt_secret_arn,
        )
        api = WebSocketApi(
            self,
            "websocket_api",
            prefix=prefix,
            region=config.region,
            functions=functions.functions,
            stage_name=config.stage_name,
            throttling_rate_limit=config.throttling_rate_limit,
            throttling_burst_limit=config.throttling_burst_limit,
            log_retention_days=config.log_retention_days,
            kms_key_arn=encryption.key_arn,
            custom_domain_name=config.custom_domain.domain_name if config.custom_domain else None,
            custom_domain_certificate_arn=config.custom_domain.certificate_arn
            if config.custom_domain
            else None,
        )
        functions.allow_connection_management(api_execution_arn=api.execution_arn, stage=api.stage_name)
        functions.use_management_endpoint(api.management_endpoint)

        Observability(
            self,
            "observability",
            prefix=prefix,
            region=config.region,
            api_id=api.api_id,
            stage_name=api.stage_name,
            function_names={name: fn.function_name for name, fn in functions.functions.items()},
            cache_member_ids=cache.member_cluster_ids,
            nat_gateway_ids=network.nat_gateway_ids,
            metrics_namespace=settings.metrics_namespace,
            service_name=settings.service_name,
            kms_key_id=encryption.key_id,
            alarm_email=config.alarm_email,
        )

        outputs = {
            "websocket_url": api.websocket_url,
            "management_endpoint": api.management_endpoint,
            "api_id": api.api_id,
            "stage": api.stage_name,
            "region": config.region,
            "function_names": {name: fn.function_name for name, fn in functions.functions.items()},
            "redis_endpoint": cache.primary_endpoint,
            "jwt_secret_arn": jwt_secret_arn or "",
        }
        for name in REQUIRED_OUTPUTS:
            TerraformOutput(self, name, value=outputs[name])
        if api.custom_domain_target:
            TerraformOutput(self, "custom_domain_target", value=api.custom_domain_target)
