"""Observability: one CloudWatch dashboard for the whole path (API, Lambdas, Redis, NAT) and alarms on what
pages someone, published to an encrypted SNS topic."""

from __future__ import annotations

import json

from cdktf_cdktf_provider_aws.cloudwatch_dashboard import CloudwatchDashboard
from cdktf_cdktf_provider_aws.cloudwatch_metric_alarm import CloudwatchMetricAlarm
from cdktf_cdktf_provider_aws.sns_topic import SnsTopic
from cdktf_cdktf_provider_aws.sns_topic_subscription import SnsTopicSubscription
from constructs import Construct

from classwire import metrics


class Observability(Construct):
    """Props: what to watch (API, functions, cache members, NAT gateways, the handlers' own metrics in
    `metrics_namespace` under the one dimension `service`) and who to tell.

    Attributes: `alarm_topic_arn`, `dashboard_name`, `alarm_names`.
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        prefix: str,
        region: str,
        api_id: str,
        stage_name: str,
        function_names: dict[str, str],
        cache_member_ids: list[str],
        nat_gateway_ids: list[str],
        metrics_namespace: str,
        service_name: str,
        kms_key_id: str,
        alarm_email: str | None,
    ) -> None:
        super().__init__(scope, id_)
        topic = SnsTopic(self, "alarm_topic", name=f"{prefix}-alarms", kms_master_key_id=kms_key_id)
        if alarm_email:
            SnsTopicSubscription(
                self, "alarm_email", topic_arn=topic.arn, protocol="email", endpoint=alarm_email
            )
        self.alarm_topic_arn: str = topic.arn
        self.alarm_names: list[str] = []
        api = {"ApiId": api_id, "Stage": stage_name}

        def alarm(
            id_: str,
            description: str,
            namespace: str,
            metric: str,
            dimensions: dict[str, str],
            threshold: float,
            *,
            statistic: str = "Sum",
            periods: int = 3,
            period: int = 60,
        ) -> None:
            name = f"{prefix}-{id_.replace('_', '-')}"
            CloudwatchMetricAlarm(
                self,
                id_,
                alarm_name=name,
                alarm_description=description,
                namespace=namespace,
                metric_name=metric,
                dimensions=dimensions,
                statistic=statistic,
                period=period,
                evaluation_periods=periods,
                datapoints_to_alarm=periods,
                threshold=threshold,
                comparison_operator="GreaterThanThreshold",
                treat_missing_data="notBreaching",
                alarm_actions=[topic.arn],
                ok_actions=[topic.arn],
            )
            self.alarm_names.append(name)

        alarm(
            "api_integration_errors",
            "Lambda integrations fail: members miss events",
            "AWS/ApiGateway",
            "IntegrationError",
            api,
            5,
        )
        alarm(
            "api_execution_errors",
            "API Gateway fails requests itself",
            "AWS/ApiGateway",
            "ExecutionError",
            api,
            5,
        )
        for function, name in function_names.items():
            alarm(
                f"{function}_errors",
                f"{name} raises errors",
                "AWS/Lambda",
                "Errors",
                {"FunctionName": name},
                3,
            )
            alarm(
                f"{function}_throttles",
                f"{name} is throttled",
                "AWS/Lambda",
                "Throttles",
                {"FunctionName": name},
                0,
            )
        for member in cache_member_ids:
            node = {"CacheClusterId": member}
            short = member.removeprefix(f"{prefix}-")  # 001, or 0001-001 in cluster mode
            alarm(
                f"redis_{short}_engine_cpu",
                f"Redis node {member}: the engine thread is saturated",
                "AWS/ElastiCache",
                "EngineCPUUtilization",
                node,
                80,
                statistic="Average",
                periods=5,
            )
            alarm(
                f"redis_{short}_memory",
                f"Redis node {member}: memory nearly full (the least recently used classroom logs are evicted next)",
                "AWS/ElastiCache",
                "DatabaseMemoryUsagePercentage",
                node,
                80,
                statistic="Average",
                periods=5,
            )
            alarm(
                f"redis_{short}_evictions",
                f"Redis node {member}: keys evicted for memory; their classrooms' clients were reset",
                "AWS/ElastiCache",
                "Evictions",
                node,
                0,
                periods=1,
            )
            alarm(
                f"redis_{short}_replication_lag",
                f"Redis node {member}: a failover would lose writes",
                "AWS/ElastiCache",
                "ReplicationLag",
                node,
                5,
                statistic="Maximum",
                periods=5,
            )
        for index, nat in enumerate(nat_gateway_ids):
            alarm(
                f"nat_{index}_port_allocation_errors",
                "NAT gateway out of ports: @connections calls fail",
                "AWS/NATGateway",
                "ErrorPortAllocation",
                {"NatGatewayId": nat},
                0,
            )

        dashboard_name = prefix
        CloudwatchDashboard(
            self,
            "dashboard",
            dashboard_name=dashboard_name,
            dashboard_body=json.dumps(
                _dashboard(
                    region,
                    api_id,
                    stage_name,
                    function_names,
                    cache_member_ids,
                    nat_gateway_ids,
                    (metrics_namespace, service_name),
                )
            ),
        )
        self.dashboard_name = dashboard_name


def _dashboard(
    region: str,
    api_id: str,
    stage: str,
    functions: dict[str, str],
    members: list[str],
    nats: list[str],
    app: tuple[str, str],
) -> dict:
    def widget(title: str, metrics: list[list], stat: str = "Sum") -> dict:
        return {
            "type": "metric",
            "width": 12,
            "height": 6,
            "properties": {
                "title": title,
                "region": region,
                "stat": stat,
                "period": 60,
                "view": "timeSeries",
                "metrics": metrics,
            },
        }

    api = ["ApiId", api_id, "Stage", stage]

    def per_function(metric: str) -> list[list[str]]:
        return [["AWS/Lambda", metric, "FunctionName", name] for name in functions.values()]

    def per_node(metric: str) -> list[list[str]]:
        return [["AWS/ElastiCache", metric, "CacheClusterId", m] for m in members]

    # The handlers' EMF metrics: aggregate over every classroom (classroomId is a log property, not a dimension).
    namespace, service = app
    own = lambda metric: [namespace, metric, "service", service]  # noqa: E731
    return {
        "widgets": [
            widget(
                "Connections and messages",
                [["AWS/ApiGateway", "ConnectCount", *api], ["AWS/ApiGateway", "MessageCount", *api]],
            ),
            widget(
                "API errors",
                [
                    ["AWS/ApiGateway", "IntegrationError", *api],
                    ["AWS/ApiGateway", "ExecutionError", *api],
                    ["AWS/ApiGateway", "ClientError", *api],
                ],
            ),
            widget("Integration latency (p99)", [["AWS/ApiGateway", "IntegrationLatency", *api]], stat="p99"),
            widget("Lambda errors", per_function("Errors")),
            widget("Lambda duration (p99)", per_function("Duration"), stat="p99"),
            widget("Lambda throttles", per_function("Throttles")),
            widget("Member delivery lag (p99, ms)", [own(metrics.MEMBER_LAG_MS)], stat="p99"),
            widget("Members behind (pings reporting behind > 0)", [own(metrics.MEMBERS_BEHIND)]),
            widget("Replays and resends", [own(metrics.REPLAYS), own(metrics.RESENDS)]),
            widget("Redis engine CPU", per_node("EngineCPUUtilization"), stat="Average"),
            widget("Redis memory used (%)", per_node("DatabaseMemoryUsagePercentage"), stat="Average"),
            widget("Redis evictions", per_node("Evictions")),
            widget("Redis connections", per_node("CurrConnections"), stat="Maximum"),
            widget("Redis replication lag (s)", per_node("ReplicationLag"), stat="Maximum"),
            widget(
                "NAT bytes out",
                [["AWS/NATGateway", "BytesOutToDestination", "NatGatewayId", n] for n in nats],
            ),
            widget(
                "NAT errors",
                [["AWS/NATGateway", "ErrorPortAllocation", "NatGatewayId", n] for n in nats]
                + [["AWS/NATGateway", "PacketsDropCount", "NatGatewayId", n] for n in nats],
            ),
        ]
    }
