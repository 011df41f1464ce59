"""What the stack is: the facts the estimate needs, read from an environment's synthesized
`cdktf.out/stacks/classwire-<env>/cdk.tf.json` (synthesized first when missing)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from classwire.settings import _VARIABLES, Limits
from classwire_infra.config import load as load_config
from cost import ROOT

# The Lambda environment variables that carry the classroom log's retention limits (named in settings).
_VARIABLE_OF = {path: name for name, path in _VARIABLES.items()}
LOG_MAX_EVENTS_VARIABLE = _VARIABLE_OF["limits.log_max_events"]
LOG_MAX_AGE_SECONDS_VARIABLE = _VARIABLE_OF["limits.log_max_age_seconds"]
FANOUT_LINGER_MS_VARIABLE = _VARIABLE_OF["fanout.linger_ms"]
PRESENCE_GRACE_VARIABLE = _VARIABLE_OF["limits.presence_grace_seconds"]
PRESENCE_LIVE_MAX_VARIABLE = _VARIABLE_OF["limits.presence_live_max_users"]


@dataclass(frozen=True)
class FunctionFacts:
    name: str
    role: str
    memory_mb: int
    architecture: str
    retention_days: int | None
    # Lambda writes its start and report lines only at a system log level of INFO or DEBUG.
    platform_lines: bool = True


@dataclass(frozen=True)
class StackFacts:
    name: str
    region: str
    availability_zones: int
    nat_gateways: int
    public_ipv4: int
    cache_node_type: str
    cache_nodes: int
    cache_engine: str
    cache_shards: int  # 1 with cluster mode off
    functions: dict[str, FunctionFacts]
    access_log_retention_days: int | None
    access_log_format: dict[str, str]
    flow_logs: int
    flow_log_interval_seconds: int
    flow_log_retention_days: int | None
    alarm_metrics_standard: int
    alarm_metrics_high_resolution: int
    dashboards: int
    kms_keys: int
    secrets: int
    log_max_events: int
    log_max_age_seconds: int
    # How long a flusher waits for more events before its first round (README, "Batching").
    fanout_linger_ms: int = 0
    # README, "Presence": a reconnect within the grace announces nothing; above live_max users a classroom is
    # crowded, and students' joins and leaves go to the teachers only.
    presence_grace_seconds: int = Limits().presence_grace_seconds
    presence_live_max_users: int = Limits().presence_live_max_users
    # The stage's default route throttle (requests per second, burst).
    stage_rate_limit: float = 0.0
    stage_burst_limit: int = 0

    @classmethod
    def from_json(cls, stack: dict, name: str = "stack") -> StackFacts:
        resources = stack.get("resource", {})

        def block(kind: str) -> list[dict]:
            return list(resources.get(kind, {}).values())

        log_groups = resources.get("aws_cloudwatch_log_group", {})

        def retention(reference: str | None) -> int | None:
            match = re.search(r"aws_cloudwatch_log_group\.([^.}]+)\.", reference or "")
            group = log_groups.get(match.group(1), {}) if match else {}
            return group.get("retention_in_days")

        functions = {}
        for function in block("aws_lambda_function"):
            role = function["function_name"].rsplit("-", 1)[-1]
            functions[role] = FunctionFacts(
                name=function["function_name"],
                role=role,
                memory_mb=int(function.get("memory_size", 128)),
                architecture=(function.get("architectures") or ["x86_64"])[0],
                retention_days=retention((function.get("logging_config") or {}).get("log_group")),
                platform_lines=(function.get("logging_config") or {}).get("system_log_level", "INFO")
                in ("INFO", "DEBUG"),
            )
        groups = block("aws_elasticache_replication_group")
        if len(groups) != 1:
            raise ValueError(f"{name}: expected one ElastiCache replication group, found {len(groups)}")
        stages = block("aws_apigatewayv2_stage")
        access = (stages[0].get("access_log_settings") or {}) if stages else {}
        route_settings = (stages[0].get("default_route_settings") or {}) if stages else {}
        flows = block("aws_flow_log")
        standard = high_resolution = 0
        for alarm in block("aws_cloudwatch_metric_alarm"):
            metrics = sum(1 for q in alarm.get("metric_query", []) if q.get("metric")) or 1
            if int(alarm.get("period", 60)) < 60:
                high_resolution += metrics
            else:
                standard += metrics
        environment = {}
        for function in block("aws_lambda_function"):
            environment.update((function.get("environment") or {}).get("variables", {}))
        limits = Limits()
        provider = (stack.get("provider", {}).get("aws") or [{}])[0]
        return cls(
            name=name,
            region=provider.get("region", "us-east-1"),
            availability_zones=len({s.get("availability_zone") for s in block("aws_subnet")}) or 1,
            nat_gateways=len(block("aws_nat_gateway")),
            public_ipv4=len(block("aws_eip")),
            cache_node_type=groups[0]["node_type"],
            cache_nodes=_cache_nodes(groups[0]),
            cache_shards=int(groups[0].get("num_node_groups") or 1),
            cache_engine=groups[0].get("engine", "redis"),
            functions=functions,
            access_log_retention_days=retention(access.get("destination_arn")),
            access_log_format=_json_or_empty(access.get("format")),
            flow_logs=len(flows),
            flow_log_interval_seconds=int(flows[0].get("max_aggregation_interval", 600)) if flows else 600,
            flow_log_retention_days=retention(flows[0].get("log_destination")) if flows else None,
            alarm_metrics_standard=standard,
            alarm_metrics_high_resolution=high_resolution,
            dashboards=len(block("aws_cloudwatch_dashboard")),
            kms_keys=len(block("aws_kms_key")),
            secrets=len(block("aws_secretsmanager_secret")),
            log_max_events=int(environment.get(LOG_MAX_EVENTS_VARIABLE, limits.log_max_events)),
            log_max_age_seconds=int(
                environment.get(LOG_MAX_AGE_SECONDS_VARIABLE, limits.log_max_age_seconds)
            ),
            fanout_linger_ms=int(environment.get(FANOUT_LINGER_MS_VARIABLE, 0)),
            presence_grace_seconds=int(
                environment.get(PRESENCE_GRACE_VARIABLE, limits.presence_grace_seconds)
            ),
            presence_live_max_users=int(
                environment.get(PRESENCE_LIVE_MAX_VARIABLE, limits.presence_live_max_users)
            ),
            stage_rate_limit=float(route_settings.get("throttling_rate_limit", 0.0)),
            stage_burst_limit=int(route_settings.get("throttling_burst_limit", 0)),
        )


def _cache_nodes(group: dict) -> int:
    """Nodes of the replication group: each shard's primary and replicas in cluster mode."""
    if group.get("num_node_groups"):
        return int(group["num_node_groups"]) * (int(group.get("replicas_per_node_group", 0)) + 1)
    return int(group.get("num_cache_clusters", 1))


def _json_or_empty(text: str | None) -> dict[str, str]:
    try:
        return json.loads(text) if text else {}
    except ValueError:
        return {}


def stack_file(env: str) -> Path:
    return ROOT / "cdktf.out" / "stacks" / load_config(env).stack_name / "cdk.tf.json"


def load_stack(env: str, *, synthesize: bool = True) -> StackFacts:
    """Reads ENV's synthesized stack; synthesizes it (building the Lambda zip if needed) when missing."""
    path = stack_file(env)
    if not path.exists() and synthesize:
        _synthesize(env)
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: run `make synth ENV={env}`")
    return StackFacts.from_json(json.loads(path.read_text()), name=load_config(env).stack_name)


def _synthesize(env: str) -> None:
    config = load_config(env)
    zip_file = ROOT / config.lambda_zip
    if not zip_file.exists():
        print(f"cost: building {zip_file.name} for {env}", file=sys.stderr)
        subprocess.run([sys.executable, str(ROOT / "scripts" / "build_lambdas.py"), "--env", env], check=True)
    print(
        f"cost: synthesizing {config.stack_name} (cdktf's jsii runtime takes ~35 s to start)", file=sys.stderr
    )
    subprocess.run([sys.executable, "-m", "classwire_infra.synth", "--env", env], check=True)
