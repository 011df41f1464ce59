"""Cache: the ElastiCache Redis 7 replication group holding the connection registry and the classroom logs,
with replicas in other AZs, TLS, encryption at rest and IAM authentication; in cluster mode (`shards` > 0)
the classrooms spread over that many shards, each a primary and its replicas.

With IAM authentication there is no password anywhere: a Lambda signs a 15-minute token with its role
(`classwire.redis_iam`), and ElastiCache checks `elasticache:Connect` on both the group and the user.
"""

from __future__ import annotations

from cdktf_cdktf_provider_aws.elasticache_parameter_group import (
    ElasticacheParameterGroup,
    ElasticacheParameterGroupParameter,
)
from cdktf_cdktf_provider_aws.elasticache_replication_group import ElasticacheReplicationGroup
from cdktf_cdktf_provider_aws.elasticache_subnet_group import ElasticacheSubnetGroup
from cdktf_cdktf_provider_aws.elasticache_user import ElasticacheUser, ElasticacheUserAuthenticationMode
from cdktf_cdktf_provider_aws.elasticache_user_group import ElasticacheUserGroup
from cdktf_cdktf_provider_aws.security_group import SecurityGroup
from cdktf_cdktf_provider_aws.vpc_security_group_egress_rule import VpcSecurityGroupEgressRule
from cdktf_cdktf_provider_aws.vpc_security_group_ingress_rule import VpcSecurityGroupIngressRule
from constructs import Construct

REDIS_PORT = 6379


class Cache(Construct):
    """Props: network placement, size, failover, snapshots, auth, key.

    Attributes: `replication_group_id`, `replication_group_arn`, `url` (rediss://primary:6379, or the
    configuration endpoint in cluster mode),
    `primary_endpoint`, `member_cluster_ids`, `user_id`/`user_arn` (IAM user, None without auth),
    `client_security_group_id` (the only group admitted on 6379).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        prefix: str,
        vpc_id: str,
        subnet_ids: list[str],
        availability_zones: tuple[str, ...],
        node_type: str,
        replicas: int,
        shards: int,
        automatic_failover: bool,
        engine_version: str,
        parameter_family: str,
        maxmemory_policy: str,
        snapshot_retention_days: int,
        snapshot_window: str,
        maintenance_window: str,
        iam_auth: bool,
        kms_key_arn: str,
    ) -> None:
        super().__init__(scope, id_)
        self.security_group = SecurityGroup(
            self,
            "security_group",
            name=f"{prefix}-redis",
            vpc_id=vpc_id,
            description=f"{prefix} Redis: TLS on {REDIS_PORT} from its clients only",
            tags={"Name": f"{prefix}-redis"},
        )
        self.client_security_group = SecurityGroup(
            self,
            "client_security_group",
            name=f"{prefix}-redis-clients",
            vpc_id=vpc_id,
            description=f"{prefix} Redis clients: members may reach Redis on {REDIS_PORT}",
            tags={"Name": f"{prefix}-redis-clients"},
        )
        VpcSecurityGroupIngressRule(
            self,
            "ingress_from_clients",
            security_group_id=self.security_group.id,
            description="Redis TLS from the Redis client security group",
            ip_protocol="tcp",
            from_port=REDIS_PORT,
            to_port=REDIS_PORT,
            referenced_security_group_id=self.client_security_group.id,
        )
        VpcSecurityGroupEgressRule(
            self,
            "client_egress_to_redis",
            security_group_id=self.client_security_group.id,
            description="Redis TLS to the cache",
            ip_protocol="tcp",
            from_port=REDIS_PORT,
            to_port=REDIS_PORT,
            referenced_security_group_id=self.security_group.id,
        )

        subnet_group = ElasticacheSubnetGroup(
            self,
            "subnet_group",
            name=f"{prefix}-redis",
            subnet_ids=subnet_ids,
            description=f"{prefix} Redis: private subnets",
        )
        parameters = ElasticacheParameterGroup(
            self,
            "parameter_group",
            name=f"{prefix}-redis7",
            family=parameter_family,
            description=f"{prefix} Redis parameters",
            # Evicting (the config says why) rather than refusing every write of every classroom when full.
            parameter=[
                ElasticacheParameterGroupParameter(name="maxmemory-policy", value=maxmemory_policy),
                *(
                    [ElasticacheParameterGroupParameter(name="cluster-enabled", value="yes")]
                    if shards
                    else []
                ),
            ],
        )

        self.user_id: str | None = None
        self.user_arn: str | None = None
        user_group_ids: list[str] | None = None
        if iam_auth:
            # IAM authentication requires the user id and name to be the same lowercase string.
            app_user = ElasticacheUser(
                self,
                "app_user",
                user_id=f"{prefix}-app",
                user_name=f"{prefix}-app",
                engine="redis",
                access_string="on ~* +@all -@dangerous",
                authentication_mode=ElasticacheUserAuthenticationMode(type="iam"),
            )
            # Every user group needs a user named `default`; this one replaces the built-in passwordless
            # `default` user and is switched off, so an unauthenticated connection can do nothing.
            disabled_default = ElasticacheUser(
                self,
                "default_user",
                user_id=f"{prefix}-default-off",
                user_name="default",
                engine="redis",
                access_string="off -@all",
                authentication_mode=ElasticacheUserAuthenticationMode(type="no-password-required"),
            )
            user_group = ElasticacheUserGroup(
                self,
                "user_group",
                user_group_id=f"{prefix}-redis",
                engine="redis",
                user_ids=[disabled_default.user_id, app_user.user_id],
            )
            self.user_id = app_user.user_id
            self.user_arn = app_user.arn
            user_group_ids = [user_group.user_group_id]

        node_count = replicas + 1
        layout: dict = (
            # Cluster mode: ElastiCache spreads each shard's nodes over the subnet group's AZs.
            {"cluster_mode": "enabled", "num_node_groups": shards, "replicas_per_node_group": replicas}
            if shards
            else {
                "num_cache_clusters": node_count,
                # The primary in the first AZ and each replica in the next one round-robin, so a replica is
                # always in another AZ than the primary.
                "preferred_cache_cluster_azs": [
                    availability_zones[i % len(availability_zones)] for i in range(node_count)
                ],
            }
        )
        self.replication_group = ElasticacheReplicationGroup(
            self,
            "replication_group",
            replication_group_id=prefix,
            description=f"{prefix}: connection registry and classroom logs",
            engine="redis",
            engine_version=engine_version,
            node_type=node_type,
            port=REDIS_PORT,
            **layout,
            automatic_failover_enabled=automatic_failover,
            multi_az_enabled=automatic_failover,
            subnet_group_name=subnet_group.name,
            security_group_ids=[self.security_group.id],
            parameter_group_name=parameters.name,
            at_rest_encryption_enabled="true",
            kms_key_id=kms_key_arn,
            transit_encryption_enabled=True,
            user_group_ids=user_group_ids,
            snapshot_retention_limit=snapshot_retention_days,
            snapshot_window=snapshot_window,
            maintenance_window=maintenance_window,
            auto_minor_version_upgrade="true",
        )
        self.replication_group_id: str = self.replication_group.id
        self.replication_group_arn: str = self.replication_group.arn
        self.primary_endpoint: str = (
            self.replication_group.configuration_endpoint_address
            if shards
            else self.replication_group.primary_endpoint_address
        )
        self.url = f"rediss://{self.primary_endpoint}:{REDIS_PORT}"
        # Member clusters (CloudWatch's CacheClusterId) are <group>-001, -002, ..., and in cluster mode
        # <group>-<shard 0001..>-<node 001..>.
        self.member_cluster_ids = (
            [f"{prefix}-{s + 1:04d}-{n + 1:03d}" for s in range(shards) for n in range(node_count)]
            if shards
            else [f"{prefix}-{i + 1:03d}" for i in range(node_count)]
        )
        self.client_security_group_id: str = self.client_security_group.id
