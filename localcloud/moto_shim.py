"""Runtime fixes to moto 5.2.5, so `terraform apply`, a clean re-plan and `terraform destroy` of the stack work.

`apply()` patches moto's classes in this process (the emulator's) before its server starts; moto's
installed files are never edited. Each patch names the gap it closes, as moto 5.2.5 behaves, so it can be
dropped once moto closes the gap upstream. `apply()` refuses any other moto version: the patches reach
into moto's internals, and a new version needs each gap checked again (tests/emulator/test_moto_shim.py
has one test per gap; CLASSWIRE_EMULATOR_WITHOUT_SHIM=1 runs them against plain moto).

ElastiCache
  (a) replication-group member clusters are not registered as cache clusters
  (b) NumCacheClusters is ignored when cluster mode is off
  (c) DeleteCacheSubnetGroup is missing
  (d) a deleted replication group stays in `deleting`
  cache clusters lack their SecurityGroups and CacheParameterGroup structures
  cache parameter groups and user groups are not implemented; their ARNs cannot be tagged
API Gateway v2
  deployments are not implemented; a stage forgets its deployment; UpdateStage is missing
  routes and integrations return never-set maps and lists as empty ones
Lambda
  LoggingConfig and DeadLetterConfig are not kept
  AddPermission with a statement id the policy already holds adds a second statement with that id
EC2
  a security-group rule that references a group loses its description
  a revoke the emulator already carried out, sent again, fails with InvalidPermission.NotFound
S3
  a bucket policy's Condition is ignored, so a TLS-only Deny (aws:SecureTransport false) denies every write
"""

from __future__ import annotations

import functools
import re
from typing import Any

MOTO_VERSION = "5.2.5"

_applied = False


def apply() -> None:
    """Patch moto once per process; a second call does nothing."""
    global _applied
    if _applied:
        return
    import moto

    if moto.__version__ != MOTO_VERSION:
        raise RuntimeError(
            f"localcloud.moto_shim was written against moto {MOTO_VERSION}, found {moto.__version__}: "
            "re-check each gap in localcloud/moto_shim.py (tests/emulator/test_moto_shim.py) and update the pin"
        )
    _patch_elasticache()
    _patch_apigatewayv2()
    _patch_lambda()
    _patch_ec2()
    _patch_s3()
    _applied = True


def _wraps(cls: type, name: str):
    """Decorator: replace `cls.name` with the decorated function, which gets the original as `original`."""
    original = getattr(cls, name)

    def decorate(patch):
        @functools.wraps(original)
        def patched(*args, **kwargs):
            return patch(original, *args, **kwargs)

        setattr(cls, name, patched)
        return patched

    return decorate


def _store(backend: Any, name: str) -> dict:
    """A per-backend dict for resources moto does not model; moto's reset rebuilds the backend, and this."""
    return backend.__dict__.setdefault(name, {})


def _stored(backend: Any, store: str, key: str, error_code: str, message: str) -> Any:
    """One resource of a shim store, or ElastiCache's not-found error for it."""
    resources = _store(backend, store)
    if key not in resources:
        raise _elasticache_error(error_code, message)
    return resources[key]


# --------------------------------------------------------------------------------------------- ElastiCache
#
# One function per patched or added operation, each under the gap it closes; `_patch_elasticache` installs
# them. Patched backend methods get moto's ElastiCacheBackend (`backend`); the `_api_` functions are API
# operations, which get moto's ElastiCacheResponse (`response`) and return what the operation answers.
# moto is imported where it is needed, never at this module's import: the emulator sets moto's
# environment before moto is first imported.


def _patch_elasticache() -> None:
    from moto.elasticache import models
    from moto.elasticache.responses import ElastiCacheResponse

    Backend = models.ElastiCacheBackend
    _wraps(Backend, "__init__")(_backend_init)
    _wraps(Backend, "create_replication_group")(_create_replication_group)
    _wraps(Backend, "delete_replication_group")(_delete_replication_group)
    Backend.delete_cache_subnet_group = _delete_cache_subnet_group  # type: ignore[attr-defined]  # patching moto: adds the missing operation
    _wraps(models.ReplicationGroup, "_set_node_members_clusters_disabled")(
        _set_node_members_clusters_disabled
    )
    # patching moto: structures its CacheCluster lacks
    models.CacheCluster.security_groups = property(_cluster_security_groups)  # type: ignore[attr-defined]
    models.CacheCluster.cache_parameter_group = property(_cluster_cache_parameter_group)  # type: ignore[attr-defined]
    for handler in (
        _api_delete_cache_subnet_group,
        _api_create_cache_parameter_group,
        _api_describe_cache_parameter_groups,
        _api_modify_cache_parameter_group,
        _api_reset_cache_parameter_group,
        _api_describe_cache_parameters,
        _api_delete_cache_parameter_group,
        _api_create_user_group,
        _api_describe_user_groups,
        _api_modify_user_group,
        _api_delete_user_group,
    ):
        setattr(ElastiCacheResponse, handler.__name__.removeprefix("_api_"), _action(handler))


def _action(operation):
    """An API operation as moto calls it: what it answers as an ActionResult, None as an EmptyResult."""
    from moto.core.responses import ActionResult, EmptyResult

    @functools.wraps(operation)
    def handle(response):
        answer = operation(response)
        return EmptyResult() if answer is None else ActionResult(answer)

    return handle


@functools.cache
def _moto_model(cls: type) -> type:
    """`cls` as a moto model (a BaseModel, whose instances moto tracks like its own), made on first use:
    moto is imported only once the shim is applied."""
    from moto.core.common_models import BaseModel

    return type(cls.__name__.removeprefix("_"), (cls, BaseModel), {"__module__": cls.__module__})


def _elasticache_error(code: str, message: str) -> Exception:
    from moto.elasticache.exceptions import ElastiCacheException

    exc = ElastiCacheException(message)
    exc.code = code
    return exc


# Gap: the backend's ARN check (used by ListTagsForResource, which the provider calls after every read)
# rejects parameter-group and user-group ARNs, the two resource kinds this shim adds below.
def _backend_init(original, backend, region_name, account_id):
    original(backend, region_name, account_id)
    backend.arn_regex = re.compile(
        r"^arn:aws:elasticache:.*:[0-9]*:"
        r"(cluster|snapshot|subnetgroup|replicationgroup|user|usergroup|parametergroup):.*$"
    )


# Gap (b): with cluster mode off, NumCacheClusters is ignored: moto derives the member count from
# ReplicasPerNodeGroup alone, so `num_cache_clusters = 2` makes a group with one node and every re-plan
# wants to add a replica. Feed the requested count through as the replica count it understands.
def _set_node_members_clusters_disabled(
    original, group, *, num_cache_clusters, replicas_per_node_group, **kwargs
):
    if not replicas_per_node_group and num_cache_clusters and num_cache_clusters > 1:
        replicas_per_node_group = num_cache_clusters - 1
    return original(
        group,
        num_cache_clusters=num_cache_clusters,
        replicas_per_node_group=replicas_per_node_group,
        **kwargs,
    )


# The CacheCluster shape has `SecurityGroups` and `CacheParameterGroup` structures; moto keeps only the
# ids/name, so DescribeCacheClusters returned neither and the provider read back no security groups
# and no parameter group for a replication group (a diff on every plan).
def _cluster_security_groups(cluster) -> list[dict[str, str]]:
    return [{"SecurityGroupId": sg, "Status": "active"} for sg in cluster.security_group_ids]


def _cluster_cache_parameter_group(cluster) -> dict[str, Any] | None:
    if not cluster.cache_parameter_group_name:
        return None
    return {
        "CacheParameterGroupName": cluster.cache_parameter_group_name,
        "ParameterApplyStatus": "in-sync",
        "CacheNodeIdsToReboot": [],
    }


# Gap (a): a replication group's member clusters (MemberClusters, NodeGroupMembers) are never
# registered as cache clusters, so the provider's read (DescribeCacheClusters on the first member,
# for node type, engine version, parameter group, security groups, encryption) fails with
# CacheClusterNotFound. Register one cache cluster per member, described from the group.
def _create_replication_group(original, backend, **kwargs):
    group = original(backend, **kwargs)
    group.auto_minor_version_upgrade = _as_bool(group.auto_minor_version_upgrade, default=True)
    group.engine_version = group.engine_version or "7.1"
    if group.transit_encryption_enabled and not group.transit_encryption_mode:
        group.transit_encryption_mode = "required"
    for node_group in group.node_groups:
        # The ReaderEndpoint structure is what the API returns; moto keeps only a bare address.
        if node_group.get("reader_endpoint_address") and "reader_endpoint" not in node_group:
            node_group["reader_endpoint"] = {
                "address": node_group["reader_endpoint_address"],
                "port": group.port,
            }
        for member in node_group["node_group_members"]:
            backend.cache_clusters[member["cache_cluster_id"]] = _member_cluster(backend, group, member)
    return group


def _member_cluster(backend: Any, group: Any, member: dict[str, Any]) -> Any:
    from moto.elasticache.models import CacheCluster

    engine = group.engine or "redis"
    version = group.engine_version or "7.1"
    cluster = CacheCluster(
        account_id=backend.account_id,
        region_name=backend.region_name,
        cache_cluster_id=member["cache_cluster_id"],
        cache_node_type=group.cache_node_type,
        replication_group_id=group.replication_group_id,
        az_mode="single-az",
        preferred_availability_zone=member.get("preferred_availability_zone"),
        num_cache_nodes=1,
        engine=engine,
        engine_version=version,
        # Like AWS: a group without its own parameter group uses the engine's default one.
        cache_parameter_group_name=group.cache_parameter_group_name
        or f"default.{engine}{version.split('.')[0]}",
        cache_subnet_group_name=group.cache_subnet_group_name,
        transit_encryption_enabled=group.transit_encryption_enabled,
        network_type=group.network_type,
        ip_discovery=group.ip_discovery,
        snapshot_name=None,
        preferred_maintenance_window=group.preferred_maintenance_window,
        port=group.port,
        notification_topic_arn=group.notification_topic_arn,
        auto_minor_version_upgrade=_as_bool(group.auto_minor_version_upgrade, default=True),
        snapshot_retention_limit=group.snapshot_retention_limit,
        snapshot_window=group.snapshot_window,
        auth_token=None,
        outpost_mode=None,
        preferred_outpost_arn=None,
        preferred_availability_zones=None,
        cache_security_group_names=None,
        security_group_ids=list(group.security_group_ids or []),
        tags=None,
        snapshot_arns=None,
        preferred_outpost_arns=None,
        log_delivery_configurations=[],
        cache_node_ids_to_remove=None,
        cache_node_ids_to_reboot=None,
    )
    # Read from the member cluster by the provider; the group holds the truth. Patching moto: its
    # CacheCluster has no such attributes, its serializer reads them by name.
    cluster.auth_token_enabled = group.auth_token_enabled
    cluster.at_rest_encryption_enabled = group.at_rest_encryption_enabled  # type: ignore[attr-defined]
    cluster.transit_encryption_mode = group.transit_encryption_mode or (  # type: ignore[attr-defined]
        "required" if group.transit_encryption_enabled else None
    )
    cluster.replication_group_log_delivery_enabled = bool(group.log_delivery_configurations)  # type: ignore[attr-defined]
    endpoint = member.get("read_endpoint") or {}
    cluster.cache_nodes = [  # type: ignore[attr-defined]
        {
            "CacheNodeId": "0001",
            "CacheNodeStatus": "available",
            "CacheNodeCreateTime": cluster.cache_cluster_create_time,
            "Endpoint": {"Address": endpoint.get("address"), "Port": group.port},
            "ParameterGroupStatus": "in-sync",
            "CustomerAvailabilityZone": member.get("preferred_availability_zone"),
        }
    ]
    return cluster


# Gap (d): DeleteReplicationGroup leaves the group in the backend with status `deleting` forever, so
# the provider's wait for it to disappear never ends (until its 40-minute timeout). Answer the delete
# with the group in `deleting`, as AWS does, then forget it and its member clusters (all of them, or
# all but the primary with RetainPrimaryCluster, which AWS keeps as a standalone cluster).
def _delete_replication_group(original, backend, replication_group_id, retain_primary_cluster):
    primary = None
    if replication_group_id in backend.replication_groups:
        node_groups = backend.replication_groups[replication_group_id].node_groups
        primary = node_groups[0]["node_group_members"][0]["cache_cluster_id"] if node_groups else None
    group = original(backend, replication_group_id, retain_primary_cluster)
    for cluster_id in list(backend.cache_clusters):
        if backend.cache_clusters[cluster_id].replication_group_id == replication_group_id:
            if retain_primary_cluster and cluster_id == primary:
                backend.cache_clusters[cluster_id].replication_group_id = None
            else:
                del backend.cache_clusters[cluster_id]
    del backend.replication_groups[replication_group_id]
    return group


def _group_or_cluster_uses(backend: Any, attribute: str, value: str) -> str | None:
    for group in backend.replication_groups.values():
        if getattr(group, attribute, None) == value:
            return group.replication_group_id
    for cluster in backend.cache_clusters.values():
        if getattr(cluster, attribute, None) == value:
            return cluster.cache_cluster_id
    return None


# Gap (c): DeleteCacheSubnetGroup is not implemented (moto answers 500), so `terraform destroy` of
# a subnet group retries until it times out.
def _delete_cache_subnet_group(backend, cache_subnet_group_name: str) -> None:
    from moto.elasticache.exceptions import CacheSubnetGroupNotFound

    if cache_subnet_group_name not in backend.cache_subnet_groups:
        raise CacheSubnetGroupNotFound(cache_subnet_group_name)
    user = _group_or_cluster_uses(backend, "cache_subnet_group_name", cache_subnet_group_name)
    if user:
        raise _elasticache_error(
            "CacheSubnetGroupInUse", f"Cache subnet group {cache_subnet_group_name} is in use by {user}."
        )
    del backend.cache_subnet_groups[cache_subnet_group_name]


def _api_delete_cache_subnet_group(response):
    response.elasticache_backend.delete_cache_subnet_group(response._get_param("CacheSubnetGroupName"))
    return


# Gap: cache parameter groups are not implemented at all (Create/Describe/Modify/Reset/Delete
# CacheParameterGroup, DescribeCacheParameters), so `aws_elasticache_parameter_group` never creates.
# Only the parameters a user set are modelled; they are what the provider reads back (Source=user).
class _CacheParameterGroup:
    def __init__(self, backend: Any, name: str, family: str, description: str):
        self.cache_parameter_group_name = name
        self.cache_parameter_group_family = family
        self.description = description
        self.is_global = False
        self.arn = f"arn:aws:elasticache:{backend.region_name}:{backend.account_id}:parametergroup:{name}"
        self.parameters: dict[str, str] = {}


def _parameter_group(backend: Any, name: str) -> Any:
    return _stored(
        backend,
        "cache_parameter_groups",
        name,
        "CacheParameterGroupNotFound",
        f"CacheParameterGroup {name} not found.",
    )


def _api_create_cache_parameter_group(response):
    backend = response.elasticache_backend
    groups = _store(backend, "cache_parameter_groups")
    name = response._get_param("CacheParameterGroupName")
    if name in groups:
        raise _elasticache_error(
            "CacheParameterGroupAlreadyExists", f"Parameter group {name} already exists."
        )
    group = _moto_model(_CacheParameterGroup)(
        backend, name, response._get_param("CacheParameterGroupFamily"), response._get_param("Description")
    )
    groups[name] = group
    if tags := response._get_param("Tags", []):
        backend.tagging_service.tag_resource(group.arn, tags)
    return {"CacheParameterGroup": group}


def _api_describe_cache_parameter_groups(response):
    backend = response.elasticache_backend
    name = response._get_param("CacheParameterGroupName")
    if name:
        groups = [_parameter_group(backend, name)]
    else:
        groups = list(_store(backend, "cache_parameter_groups").values())
    return {"CacheParameterGroups": groups}


def _api_modify_cache_parameter_group(response):
    name = response._get_param("CacheParameterGroupName")
    group = _parameter_group(response.elasticache_backend, name)
    for parameter in response._get_param("ParameterNameValues", []):
        group.parameters[parameter["ParameterName"]] = parameter["ParameterValue"]
    return {"CacheParameterGroupName": name}


def _api_reset_cache_parameter_group(response):
    name = response._get_param("CacheParameterGroupName")
    group = _parameter_group(response.elasticache_backend, name)
    if response._get_bool_param("ResetAllParameters"):
        group.parameters.clear()
    for parameter in response._get_param("ParameterNameValues", []):
        group.parameters.pop(parameter["ParameterName"], None)
    return {"CacheParameterGroupName": name}


def _api_describe_cache_parameters(response):
    group = _parameter_group(response.elasticache_backend, response._get_param("CacheParameterGroupName"))
    source = response._get_param("Source")
    parameters = [
        {
            "ParameterName": name,
            "ParameterValue": value,
            "Source": "user",
            "DataType": "string",
            "IsModifiable": True,
            "ChangeType": "immediate",
        }
        for name, value in sorted(group.parameters.items())
    ]
    if source not in (None, "user"):
        parameters = []
    return {"Parameters": parameters, "CacheNodeTypeSpecificParameters": []}


def _api_delete_cache_parameter_group(response):
    backend = response.elasticache_backend
    name = response._get_param("CacheParameterGroupName")
    group = _parameter_group(backend, name)
    user = _group_or_cluster_uses(backend, "cache_parameter_group_name", name)
    if user:
        raise _elasticache_error(
            "InvalidCacheParameterGroupState", f"Parameter group {name} is in use by {user}."
        )
    del _store(backend, "cache_parameter_groups")[name]
    backend.tagging_service.delete_all_tags_for_resource(group.arn)
    return


# Gap: user groups are not implemented (Create/Describe/Modify/DeleteUserGroup), so
# `aws_elasticache_user_group` (RBAC, needed for IAM authentication) never creates. Modelled like AWS:
# the members must exist and a Redis group must hold a user named `default`; a group in use by a
# replication group cannot be deleted; a deleted group answers `deleting` and is gone at once (the
# provider waits for it to disappear).
class _UserGroup:
    def __init__(self, backend: Any, user_group_id: str, engine: str, user_ids: list[str]):
        self._backend = backend
        self.user_group_id = user_group_id
        self.engine = engine
        self.user_ids = user_ids
        self.status = "active"
        self.minimum_engine_version = "6.0"
        self.arn = f"arn:aws:elasticache:{backend.region_name}:{backend.account_id}:usergroup:{user_group_id}"

    @property
    def replication_groups(self) -> list[str]:
        return [
            group.replication_group_id
            for group in self._backend.replication_groups.values()
            if self.user_group_id in (group.user_group_ids or [])
        ]

    @property
    def serverless_caches(self) -> list[str]:
        return []


def _check_members(backend: Any, engine: str, user_ids: list[str]) -> None:
    from moto.elasticache.exceptions import UserNotFound

    for user_id in user_ids:
        if user_id not in backend.users:
            raise UserNotFound(user_id)
    names = [backend.users[user_id].name for user_id in user_ids]
    if engine == "redis" and "default" not in names:
        raise _elasticache_error(
            "DefaultUserRequired", "User group needs to contain a user with the user name default."
        )
    if len(set(names)) != len(names):
        raise _elasticache_error(
            "DuplicateUserName", "A user group cannot hold two users with the same user name."
        )


def _user_group(backend: Any, user_group_id: str) -> Any:
    return _stored(
        backend, "user_groups", user_group_id, "UserGroupNotFound", f"User group {user_group_id} not found."
    )


def _api_create_user_group(response):
    backend = response.elasticache_backend
    groups = _store(backend, "user_groups")
    user_group_id = response._get_param("UserGroupId")
    engine = (response._get_param("Engine") or "redis").lower()
    user_ids = response._get_param("UserIds", [])
    if user_group_id in groups:
        raise _elasticache_error("UserGroupAlreadyExists", f"User group {user_group_id} already exists.")
    _check_members(backend, engine, user_ids)
    group = _moto_model(_UserGroup)(backend, user_group_id, engine, user_ids)
    groups[user_group_id] = group
    for user_id in user_ids:
        backend.users[user_id].user_group_ids.append(user_group_id)
    if tags := response._get_param("Tags", []):
        backend.tagging_service.tag_resource(group.arn, tags)
    return group


def _api_describe_user_groups(response):
    backend = response.elasticache_backend
    groups = _store(backend, "user_groups")
    user_group_id = response._get_param("UserGroupId")
    if not user_group_id:
        return {"UserGroups": list(groups.values())}
    return {"UserGroups": [_user_group(backend, user_group_id)]}


def _api_modify_user_group(response):
    backend = response.elasticache_backend
    group = _user_group(backend, response._get_param("UserGroupId"))
    to_add = response._get_param("UserIdsToAdd", [])
    to_remove = response._get_param("UserIdsToRemove", [])
    user_ids = [u for u in group.user_ids if u not in to_remove] + [
        u for u in to_add if u not in group.user_ids
    ]
    _check_members(backend, group.engine, user_ids)
    for user_id in to_remove:
        if user_id in backend.users and group.user_group_id in backend.users[user_id].user_group_ids:
            backend.users[user_id].user_group_ids.remove(group.user_group_id)
    for user_id in to_add:
        backend.users[user_id].user_group_ids.append(group.user_group_id)
    group.user_ids = user_ids
    return group


def _api_delete_user_group(response):
    backend = response.elasticache_backend
    group = _user_group(backend, response._get_param("UserGroupId"))
    if group.replication_groups:
        raise _elasticache_error(
            "InvalidUserGroupState",
            f"User group {group.user_group_id} is in use by {', '.join(group.replication_groups)}.",
        )
    for user_id in group.user_ids:
        if user_id in backend.users and group.user_group_id in backend.users[user_id].user_group_ids:
            backend.users[user_id].user_group_ids.remove(group.user_group_id)
    group.status = "deleting"
    del _store(backend, "user_groups")[group.user_group_id]
    backend.tagging_service.delete_all_tags_for_resource(group.arn)
    return group


# ----------------------------------------------------------------------------------------- API Gateway v2


def _patch_apigatewayv2() -> None:
    import json
    from datetime import datetime
    from urllib.parse import unquote

    from moto.apigatewayv2 import models, urls
    from moto.apigatewayv2.exceptions import APIGatewayV2Error, BadRequestException
    from moto.apigatewayv2.responses import ApiGatewayV2Response
    from moto.core.utils import iso_8601_datetime_without_milliseconds
    from moto.moto_api._internal import mock_random as random

    Stage = models.Stage

    class DeploymentNotFound(APIGatewayV2Error):
        code = 404

        def __init__(self, deployment_id: str):
            super().__init__("NotFoundException", f"Invalid Deployment identifier specified {deployment_id}")

    # Gap: a stage forgets its DeploymentId (neither stored nor returned), so the provider reads back an
    # empty `deployment_id` and every plan wants to update the stage.
    @_wraps(Stage, "__init__")
    def _stage_init(original, self, api, config):
        original(self, api, config)
        self.deployment_id = config.get("deploymentId")

    @_wraps(Stage, "to_json")
    def _stage_to_json(original, self):
        body = original(self)
        if self.deployment_id:
            body["deploymentId"] = self.deployment_id
        return body

    # Gap: UpdateStage is not implemented, so a stage can never move to a new deployment (the
    # deployment is replaced whenever routes, integrations or the authorizer change).
    def update_stage(self):
        api_id = self.path.split("/")[-3]
        stage = self.apigatewayv2_backend.get_stage(api_id, unquote(self.path.split("/")[-1]))
        changes = json.loads(self.body or "{}")
        fields = {
            "accessLogSettings": "access_log_settings",
            "autoDeploy": "auto_deploy",
            "clientCertificateId": "client_certificate_id",
            "defaultRouteSettings": "default_route_settings",
            "deploymentId": "deployment_id",
            "description": "description",
            "routeSettings": "route_settings",
            "stageVariables": "stage_variables",
        }
        for key, attribute in fields.items():
            if key in changes:
                if key == "deploymentId":
                    deployment(self.apigatewayv2_backend.get_api(api_id), changes[key])
                setattr(stage, attribute, changes[key])
        stage.updated = datetime.now()
        return 200, {}, json.dumps(stage.to_json())

    # Gap: deployments are not implemented at all (no URL, no model), so `aws_apigatewayv2_deployment`
    # fails with a 404 HTML page. Modelled like AWS: a deployment a stage still points to cannot be deleted.
    def deployments(api: Any) -> dict[str, dict[str, Any]]:
        return api.__dict__.setdefault("deployments", {})

    def deployment(api: Any, deployment_id: str) -> dict[str, Any]:
        if deployment_id not in deployments(api):
            raise DeploymentNotFound(deployment_id)
        return deployments(api)[deployment_id]

    def api_and_deployment_id(self) -> tuple[Any, str]:
        parts = self.path.rstrip("/").split("/")
        index = parts.index("apis")
        api = self.apigatewayv2_backend.get_api(parts[index + 1])
        return api, (parts[index + 3] if len(parts) > index + 3 else "")

    def create_deployment(self):
        api, _ = api_and_deployment_id(self)
        params = json.loads(self.body or "{}")
        item: dict[str, Any] = {
            "deploymentId": "".join(random.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(6)),
            "deploymentStatus": "DEPLOYED",
            "autoDeployed": False,
            "createdDate": iso_8601_datetime_without_milliseconds(datetime.now()),
        }
        if params.get("description"):
            item["description"] = params["description"]
        deployments(api)[item["deploymentId"]] = item
        if params.get("stageName"):
            stage = api.get_stage(params["stageName"])
            stage.deployment_id = item["deploymentId"]
        return 201, {}, json.dumps(item)

    def get_deployment(self):
        api, deployment_id = api_and_deployment_id(self)
        return 200, {}, json.dumps(deployment(api, deployment_id))

    def get_deployments(self):
        api, _ = api_and_deployment_id(self)
        return 200, {}, json.dumps({"items": list(deployments(api).values())})

    def update_deployment(self):
        api, deployment_id = api_and_deployment_id(self)
        item = deployment(api, deployment_id)
        params = json.loads(self.body or "{}")
        if "description" in params:
            item["description"] = params["description"]
        return 200, {}, json.dumps(item)

    def delete_deployment(self):
        api, deployment_id = api_and_deployment_id(self)
        deployment(api, deployment_id)
        if any(stage.deployment_id == deployment_id for stage in api.stages.values()):
            raise BadRequestException("Active stages pointing to this deployment must be moved or deleted")
        del deployments(api)[deployment_id]
        return 204, {}, ""

    for handler in (
        update_stage,
        create_deployment,
        get_deployment,
        get_deployments,
        update_deployment,
        delete_deployment,
    ):
        setattr(ApiGatewayV2Response, handler.__name__, handler)

    # Gap: routes and integrations answer unset optional maps and lists as `{}`/`[]` (AWS leaves them
    # out), which the provider reads back as a change made outside Terraform; anything derived from those
    # attributes (the deployment's redeploy hash, if it covers them) then changes on every plan.
    def omit_empty(to_json, optional: tuple[str, ...]):
        @functools.wraps(to_json)
        def patched(self):
            body = to_json(self)
            for key in optional:
                if body.get(key) in ({}, [], None):
                    body.pop(key, None)
            return body

        return patched

    # patching moto
    models.Route.to_json = omit_empty(  # type: ignore[method-assign]
        models.Route.to_json, ("authorizationScopes", "requestModels", "requestParameters")
    )
    models.Integration.to_json = omit_empty(  # type: ignore[method-assign]
        models.Integration.to_json,
        ("requestParameters", "requestTemplates", "responseParameters", "tlsConfig"),
    )

    urls.url_paths["{0}/v2/apis/(?P<api_id>[^/]+)/deployments$"] = ApiGatewayV2Response.dispatch
    urls.url_paths["{0}/v2/apis/(?P<api_id>[^/]+)/deployments/(?P<deployment_id>[^/]+)$"] = (
        ApiGatewayV2Response.dispatch
    )


# --------------------------------------------------------------------------------------------------- EC2


def _patch_ec2() -> None:
    from moto.ec2.models.security_groups import SecurityGroupRule

    # Gap: a rule that references another security group loses its description (moto reads it only from
    # an IP range), so `aws_vpc_security_group_ingress_rule` with `referenced_security_group_id` and a
    # `description` shows a change on every plan.
    SecurityGroupRule.description = property(  # type: ignore[method-assign, assignment]  # patching moto
        lambda self: self.ip_range.get("Description") or self.source_group.get("Description")
    )

    from moto.ec2.models.security_groups import SecurityGroupBackend

    # Gap (the AddPermission one below, for rules): a `terraform destroy` failed with InvalidPermission.NotFound
    # on RevokeSecurityGroupEgress for a rule the emulator had just revoked: the Go SDK had sent the request
    # again after losing the first reply. A revoke by rule ids that were all revoked here before is taken as
    # that resend and answered as the first one was; any other unknown rule is still refused, as AWS does.
    for direction in ("ingress", "egress"):

        def _revoke(original, self, *args, security_rule_ids=None, **kwargs):
            revoked = _store(self, "revoked_security_group_rules")
            if security_rule_ids and all(rule_id in revoked for rule_id in security_rule_ids):
                return None
            result = original(self, *args, security_rule_ids=security_rule_ids, **kwargs)
            revoked.update(dict.fromkeys(security_rule_ids or ()))
            return result

        _wraps(SecurityGroupBackend, f"revoke_security_group_{direction}")(_revoke)


# ------------------------------------------------------------------------------------------------ Lambda


def _patch_lambda() -> None:
    from moto.awslambda.models import LambdaFunction

    # Gap: a function's LoggingConfig (log format and log group) is neither stored nor returned, so a
    # function that logs to its own log group (`logging_config`) shows a change on every plan. AWS
    # answers the default (Text, /aws/lambda/NAME) when none was given.
    @_wraps(LambdaFunction, "__init__")
    def _init(original, self, account_id, spec, *args, **kwargs):
        original(self, account_id, spec, *args, **kwargs)
        self.logging_config = {
            "LogFormat": "Text",
            "LogGroup": f"/aws/lambda/{self.function_name}",
            **(spec.get("LoggingConfig") or {}),
        }
        self.logs_group_name = self.logging_config["LogGroup"]

        # Gap: DeadLetterConfig is neither stored nor returned either (a change on every plan).
        self.dead_letter_config = spec.get("DeadLetterConfig") or {}

    @_wraps(LambdaFunction, "get_configuration")
    def _get_configuration(original, self, *args, **kwargs):
        config = {**original(self, *args, **kwargs), "LoggingConfig": self.logging_config}
        if self.dead_letter_config.get("TargetArn"):
            config["DeadLetterConfig"] = self.dead_letter_config
        return config

    @_wraps(LambdaFunction, "update_configuration")
    def _update_configuration(original, self, config_updates):
        if "LoggingConfig" in config_updates:
            self.logging_config = {**self.logging_config, **config_updates["LoggingConfig"]}
            self.logs_group_name = self.logging_config["LogGroup"]
        if "DeadLetterConfig" in config_updates:
            self.dead_letter_config = config_updates["DeadLetterConfig"] or {}
        return original(self, config_updates)

    from moto.awslambda.exceptions import LambdaClientError
    from moto.awslambda.policy import Policy

    class StatementIdExists(LambdaClientError):
        code = 409

        def __init__(self, sid: str) -> None:
            super().__init__(
                "ResourceConflictException",
                f"The statement id ({sid}) provided already exists. Please provide a new statement id, "
                "or remove the existing statement.",
            )

    # Gap: AddPermission never checks the statement id, so a request sent twice leaves two statements with
    # one id; RemovePermission then removes one and the provider waits 5 minutes for the other to go (a
    # `terraform destroy` failed so, after the Go SDK had resent one AddPermission the emulator had already
    # answered with 200: the Go client never read that reply). AWS refuses an id in use (409), and so does
    # the emulator when the statement differs. The very same statement again is taken as that resend and
    # answered as the first request was, since failing the apply would only report the lost reply.
    @_wraps(Policy, "add_statement")
    def _add_statement(original, self, raw, qualifier=None):
        revision = self.revision
        statement, _ = original(self, raw, qualifier)
        earlier = [s for s in self.statements[:-1] if s.get("Sid") == statement["Sid"]]
        if not earlier:
            return statement, self.revision
        self.statements.pop()  # the one just added
        self.revision = revision
        if earlier[0] != statement:
            raise StatementIdExists(statement["Sid"])
        return earlier[0], self.revision


# ---------------------------------------------------------------------------------------------------- S3


def _patch_s3() -> None:
    import json

    from moto.s3.models import FakeBucket

    # Gap: moto evaluates a bucket policy's statements without their Condition, so the usual TLS-only
    # statement (Deny s3:* when aws:SecureTransport is false) denies every request, uploads included. The
    # emulator stands in for AWS's HTTPS endpoints (its plain HTTP is the loopback hop only), so that
    # statement never matches; every other statement is evaluated as moto does.
    insecure_transport_only = {"Bool": {"aws:SecureTransport": "false"}}

    @_wraps(FakeBucket, "get_permission")
    def _get_permission(original, self, action, resource):
        from moto.iam.access_control import IAMPolicy, PermissionResult

        if self.policy is None:
            return original(self, action, resource)
        policy = json.loads(self.policy)
        kept = [s for s in policy.get("Statement", []) if s.get("Condition") != insecure_transport_only]
        if not kept:
            return PermissionResult.NEUTRAL
        # moto's own evaluation (IAMPolicy), of the statements that can match.
        return IAMPolicy(json.dumps({**policy, "Statement": kept})).is_action_permitted(action, resource)


def _as_bool(value: Any, default: bool) -> bool:
    """moto keeps some booleans as the raw query-string value ("true"/"false") or None."""
    if value is None:
        return default
    if isinstance(value, str):
        return value.lower() == "true"
    return bool(value)
