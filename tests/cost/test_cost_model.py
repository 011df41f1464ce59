"""The cost model: hand-checked numbers on a small synthetic stack and profile, the real stacks' facts, the
price file's citations, 32 KB metering, the output files and what each lever changes."""

from __future__ import annotations

import math
import re
import tomllib

import pytest

from classwire_infra.paths import ROOT
from cost.batching import batching
from cost.estimate import FIXED, LOG_EVENT_OVERHEAD_BYTES, estimate
from cost.frames import event_frame_bytes, metered_units
from cost.levers import levers
from cost.profile import DEFAULT_PROFILE, UsageProfile, build, load_profile
from cost.render import write_results
from cost.stack_facts import StackFacts

HOURS = 730
ACTIVE_SECONDS = 3600  # the synthetic profile: one hour on one day


def synthetic_stack(nat_gateways: int = 1) -> dict:
    """Two AZs, one NAT, two cache.t4g.small nodes, four 1024 MB arm64 functions, 30-day logs."""

    def function(role: str) -> dict:
        return {
            "function_name": f"cw-test-{role}",
            "memory_size": 1024,
            "architectures": ["arm64"],
            "logging_config": {"log_group": f"${{aws_cloudwatch_log_group.{role}_logs.name}}"},
            "environment": {
                "variables": {"CLASSWIRE_LOG_MAX_EVENTS": "10000", "CLASSWIRE_LOG_MAX_AGE_SECONDS": "86400"}
            },
        }

    roles = ("authorizer", "connect", "disconnect", "message")
    groups = {f"{r}_logs": {"name": f"/aws/lambda/cw-test-{r}", "retention_in_days": 30} for r in roles}
    groups |= {"access": {"retention_in_days": 30}, "flow": {"retention_in_days": 30}}
    return {
        "provider": {"aws": [{"region": "us-east-1"}]},
        "resource": {
            "aws_subnet": {
                f"s{i}": {"availability_zone": az} for i, az in enumerate(["us-east-1a", "us-east-1b"] * 2)
            },
            "aws_nat_gateway": {f"nat{i}": {} for i in range(nat_gateways)},
            "aws_eip": {f"eip{i}": {} for i in range(nat_gateways)},
            "aws_elasticache_replication_group": {
                "rg": {"node_type": "cache.t4g.small", "num_cache_clusters": 2}
            },
            "aws_lambda_function": {r: function(r) for r in roles},
            "aws_cloudwatch_log_group": groups,
            "aws_apigatewayv2_stage": {
                "stage": {
                    "access_log_settings": {
                        "destination_arn": "${aws_cloudwatch_log_group.access.arn}",
                        "format": '{"requestId": "$context.requestId", "status": "$context.status"}',
                    }
                }
            },
            "aws_flow_log": {
                "flow": {
                    "log_destination": "${aws_cloudwatch_log_group.flow.arn}",
                    "max_aggregation_interval": 60,
                }
            },
            "aws_cloudwatch_metric_alarm": {"a1": {"period": 60}, "a2": {"period": 300}},
            "aws_cloudwatch_dashboard": {"d": {}},
            "aws_kms_key": {"k": {}},
            "aws_secretsmanager_secret": {"s": {}},
        },
    }


def synthetic_profile(**changes):
    data = {
        "name": "synthetic",
        "description": "100 users in 10 rooms for one hour",
        "peak_concurrent_users": 100,
        "monthly_active_users": 150,
        "classrooms": 10,
        "hours_per_day": 1,
        "days_per_month": 1,
        "average_to_peak": 1.0,
        "ping_interval_seconds": 60,
        "reconnects_per_connection_hour": 0,
        "reconnect_gap_seconds": 5,
        "reconnects_within_grace": 0.75,
        "stroke_coalescing_factor": 1,
        "events": {
            "chat": {"per_member_per_second": 0.01, "data_bytes": 20},
            "stroke": {"per_member_per_second": 0.02, "data_bytes": 100, "fixed_data_bytes": 50},
            "cursor": {"per_member_per_second": 0.05, "data_bytes": 25},
        },
        "ids": {
            "user_id_chars": 4,
            "name_chars": 3,
            "classroom_id_chars": 2,
            "client_id_chars": 2,
            "connection_id_chars": 16,
        },
        "lambda_timing": {
            "full_vcpu_memory_mb": 1769,
            "redis_round_trip_ms": 1.0,
            "post_round_trip_ms": 10.0,
            "cpu_ms_per_frame": 2.0,
            "cpu_ms_per_delivery": 0.1,
            "authorizer_cpu_ms": 4.0,
        },
        "logs": {
            "platform_bytes_per_invocation": 700,
            "emf_bytes_per_invocation": 400,
            "app_bytes_per_connect": 300,
            "app_bytes_per_message": 0,
            "compression_ratio": 0.15,
        },
        "network": {
            "post_request_overhead_bytes": 1700,
            "post_response_bytes": 300,
            "redis_request_overhead_bytes": 400,
            "redis_reply_bytes_per_member": 24,
        },
        "flow_logs": {
            "warm_environments_per_concurrent_execution": 2.0,
            "flows_per_environment": 8,
            "records_per_flow": 5,
            "record_bytes": 130,
        },
        "monthly_requests": {"kms": 20_000, "secrets_manager": 10_000},
    }
    data.update(changes)
    return build(UsageProfile, data, where="synthetic")


@pytest.fixture
def small(prices):
    stack = StackFacts.from_json(synthetic_stack(), name="synthetic")
    profile = synthetic_profile()
    return stack, profile, estimate(stack, profile, prices)


def test_fixed_components_by_hand(small):
    _, _, result = small
    lines = result.by_component()
    assert lines["NAT gateway hours"] == pytest.approx(1 * HOURS * 0.045)  # $32.85
    assert lines["ElastiCache nodes"] == pytest.approx(2 * HOURS * 0.032)  # $46.72
    assert lines["Public IPv4 addresses (NAT Elastic IPs)"] == pytest.approx(HOURS * 0.005)
    assert lines["CloudWatch alarms"] == pytest.approx(2 * 0.10)
    assert lines["KMS keys"] == 1.00 and lines["CloudWatch dashboards"] == 3.00
    assert lines["KMS requests"] == pytest.approx(20_000 / 10_000 * 0.03)


def test_messages_connection_minutes_and_nat_bytes_by_hand(small):
    _, _, result = small
    quantity = {line.component: line.quantity for line in result.lines}
    # 100 members, 10 per room: chat 1/s, strokes 2/s, cursors 5/s in; chat and strokes delivered to the
    # room's 10 members, cursors (volatile) to the 9 others; a ping every 60 s per member, answered by a pong.
    persistent, volatile = 100 * (0.01 + 0.02), 100 * 0.05
    sends = persistent + volatile
    pings = 100 / 60
    # Each member is posted once per fan-out round: 0.8 events/s per room, a round of 10 ms posts + 1 ms settle.
    m = batching(0.8, 11.0).messages_per_event
    assert 0.999 < m < 1 and result.traffic["API Gateway messages per delivered event (batching)"] == m
    assert quantity["API Gateway messages"] == pytest.approx(
        ACTIVE_SECONDS * (sends + (persistent * 10 + volatile * 9) * m + 2 * pings)
    )
    assert result.by_component()["API Gateway messages"] == pytest.approx(
        quantity["API Gateway messages"] / 1e6 * 1.00
    )
    assert quantity["API Gateway connection minutes"] == pytest.approx(100 * 60)

    # The chat frame written out by hand, with its 20-byte data: what each member gets, through the NAT.
    data = '"' + "x" * 18 + '"'
    chat = (
        '{"type":"event","classroom":"cc","seq":123456,"eid":"9f2c0a1b3d4e5f60","prev":"9f2c0a1b3d4e5f60",'
        f'"id":"mm","from":"uuuu","role":"student","name":"nnn","event":"chat","data":{data},"ts":1764000000000}}'
    )
    ids = result.profile.ids
    assert event_frame_bytes("chat", 20, True, ids) == len(chat)
    stroke = event_frame_bytes("stroke", 150, True, ids)
    cursor = event_frame_bytes("cursor", 25, False, ids)  # volatile: no seq, eid, prev
    assert cursor == event_frame_bytes("cursor", 25, True, ids) - len(
        ',"seq":123456,"eid":"9f2c0a1b3d4e5f60","prev":"9f2c0a1b3d4e5f60"'
    )
    per_second = 10 * (1 * (len(chat) + 2000 * m) + 2 * (stroke + 2000 * m)) + 9 * 5 * (cursor + 2000 * m)
    assert quantity["NAT data processing (fan-out to @connections)"] == pytest.approx(
        per_second * ACTIVE_SECONDS / 1024**3
    )


def test_lambda_requests_and_duration_by_hand(small):
    _, _, result = small
    quantity = {line.component: line.quantity for line in result.lines}
    sends, pings = 8.0, 100 / 60
    assert quantity["Lambda requests"] == pytest.approx((sends + pings) * ACTIVE_SECONDS)
    # send: 1 ms append + m x (10 ms posts + 1 ms settle) + (2 + 0.1 x 10 x m) ms CPU x 1769/1024 -> 18 ms
    # billed; ping: 1 + 2 x 1.73 -> 5.
    m = batching(0.8, 11.0).messages_per_event
    send_ms = math.ceil(1 + 11 * m + (2 + 1.0 * m) * 1769 / 1024)
    ping_ms = math.ceil(1 + 2 * 1769 / 1024)
    assert (send_ms, ping_ms) == (18, 5)
    assert quantity["Lambda duration (arm64)"] == pytest.approx(
        (sends * send_ms + pings * ping_ms) / 1000 * ACTIVE_SECONDS * 1.0
    )


@pytest.mark.parametrize(
    ("size", "units"),
    [(1, 1), (32 * 1024, 1), (32 * 1024 + 1, 2), (64 * 1024, 2), (100 * 1024, 4), (128 * 1024, 4)],
)
def test_messages_are_metered_in_32_kb_units_rounded_up(size, units):
    assert metered_units(size) == units


def test_a_frame_over_32_kb_costs_two_messages_per_delivery(prices):
    stack = StackFacts.from_json(synthetic_stack(), name="synthetic")
    small = synthetic_profile(events={"chat": {"per_member_per_second": 0.01, "data_bytes": 20_000}})
    large = synthetic_profile(events={"chat": {"per_member_per_second": 0.01, "data_bytes": 40_000}})
    messages = [
        {line.component: line.quantity for line in estimate(stack, p, prices).lines}["API Gateway messages"]
        for p in (small, large)
    ]
    chat_messages = ACTIVE_SECONDS * (1 + 10)  # 1 send/s in, 10 deliveries/s out
    assert messages[1] - messages[0] == pytest.approx(chat_messages)


def test_tiered_prices_apply_per_tier(prices):
    messages = prices["api_gateway_messages"]
    assert messages.cost(1e9) == pytest.approx(1_000)
    assert messages.cost(3e9) == pytest.approx(1_000 + 2_000 * 0.80)


def test_reads_the_real_dev_and_prod_stacks(synthesized):
    from classwire_infra.config import load

    for env in ("dev", "prod"):
        facts = StackFacts.from_json(synthesized[env], name=env)
        config = load(env)
        assert facts.nat_gateways == config.nat_gateway_count
        assert facts.public_ipv4 == config.nat_gateway_count
        assert facts.availability_zones == len(config.availability_zones)
        assert facts.cache_node_type == config.redis_node_type
        assert facts.cache_nodes == config.redis_node_count
        assert set(facts.functions) == {"authorizer", "connect", "disconnect", "message"}
        for function in facts.functions.values():
            assert function.memory_mb == config.lambda_memory_mb
            assert function.architecture == config.lambda_architecture
            assert function.retention_days == config.log_retention_days
        assert facts.access_log_retention_days == facts.flow_log_retention_days == config.log_retention_days
        assert facts.flow_logs == 1 and facts.kms_keys == 1 and facts.dashboards == 1
        assert facts.alarm_metrics_standard > 0
        assert facts.secrets == (1 if config.jwt_uses_secret else 0)
        assert facts.log_max_events == config.limits.log_max_events
        assert "$context.connectionId" in facts.access_log_format.values()
    dev = StackFacts.from_json(synthesized["dev"])
    prod = StackFacts.from_json(synthesized["prod"])
    assert (dev.nat_gateways, dev.cache_node_type, dev.functions["message"].memory_mb) == (
        1,
        "cache.t4g.small",
        512,
    )
    assert (prod.nat_gateways, prod.cache_node_type, prod.functions["message"].memory_mb) == (
        3,
        "cache.r7g.large",
        1024,
    )


def test_every_price_has_a_source_and_a_date(prices):
    with open(ROOT / "cost" / "prices.toml", "rb") as file:
        raw = tomllib.load(file)
    assert raw["meta"]["region"] == "us-east-1"
    for price in prices.aws.values():
        assert price.source.startswith("https://"), price.key
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", price.retrieved), price.key
    entries = [e for k, e in raw["aws"].items() if k != "elasticache_node_hour"]
    entries += list(raw["aws"]["elasticache_node_hour"].values())
    assert all(e["region"] == "us-east-1" for e in entries)
    for vendor in (raw["pusher"], raw["ably"]):
        assert vendor["source"].startswith("https://") and re.fullmatch(
            r"\d{4}-\d{2}-\d{2}", vendor["retrieved"]
        )
        assert vendor["counting_source"].startswith("https://")
    # Every node type a stack uses has a price.
    from classwire_infra.config import ENVIRONMENTS, load

    for env in ENVIRONMENTS:
        assert f"elasticache_node_hour:{load(env).redis_node_type}" in prices.aws


def test_the_reference_profile_loads_and_unknown_keys_are_refused():
    profile = load_profile(DEFAULT_PROFILE)
    assert (profile.peak_concurrent_users, profile.classrooms) == (5000, 500)
    assert (profile.hours_per_day, profile.days_per_month) == (8, 22)
    with pytest.raises(ValueError, match="unknown keys"):
        synthetic_profile(typo=1)
    with pytest.raises(ValueError, match="not an event type"):
        synthetic_profile(events={"doodle": {"per_member_per_second": 1.0, "data_bytes": 1}})


def test_writes_the_markdown_and_the_chart(prices, small, tmp_path):
    stack, profile, result = small
    markdown, svg = write_results(
        "test",
        result,
        levers(stack, profile, prices),
        prices,
        DEFAULT_PROFILE,
        tmp_path,
    )
    assert markdown == tmp_path / "test-synthetic.md" and svg == tmp_path / "test-synthetic.svg"
    text = markdown.read_text()
    assert "| **Total** |" in text and "Pusher Channels" in text and "Ably" in text and "## Levers" in text
    assert f"{result.total:,.2f}" in text
    assert svg.read_text().startswith("<svg") and "Ably" in svg.read_text()


def test_vendors_count_messages_their_own_way(small, prices):
    _, _, result = small
    # 3 persistent (chat, strokes) and 5 volatile (cursor) publishes a second into rooms of 10, for an hour.
    persistent, volatile, room = 3.0, 5.0, 10
    vendors = {v.service: v for v in result.vendors}
    # Pusher: each publish and its 9 deliveries (client events skip the sender): 288,000 a day, over the
    # Sandbox's 200,000, so the cheapest plan that fits is Startup.
    pusher = vendors["Pusher Channels"]
    assert (pusher.usd, pusher.plan, pusher.list_price) == (49.0, "Startup plan", True)
    assert pusher.counted.startswith("0.3M messages/day")
    # Ably, echo off: each publish and its 9 deliveries, plus one per stored (persistent) message.
    messages = ((persistent + volatile) * room + persistent) * ACTIVE_SECONDS
    per_minute = vendors["Ably (per minute: accounts before MAU pricing)"]
    minutes = 100 * 60
    assert per_minute.usd == pytest.approx(
        29 + messages / 1e6 * 2.50 + minutes / 1e6 * 1.00 + 10 * 60 / 1e6 * 1.00
    )
    # MAU: 150 users x $0.05 on the Standard base; 298,800 messages are inside 150 x 20,000 fair use.
    assert vendors["Ably (MAU: new accounts)"].usd == pytest.approx(29 + 150 * 0.05)
    # AppSync Events: every subscriber gets each event, its publisher included, and the publish is one too.
    operations = (persistent + volatile) * (1 + room) * ACTIVE_SECONDS
    assert vendors["AWS AppSync Events"].usd == pytest.approx(operations / 1e6 * 1.00 + minutes / 1e6 * 0.08)
    # PubNub: a replicated transaction per publish, an edge one per delivery, persistence per GB.
    pubnub = vendors["PubNub (transactions)"]
    assert result.vendor_traffic is not None
    stored = persistent * result.vendor_traffic.persistent_bytes * ACTIVE_SECONDS / 1024**3
    assert pubnub.usd == pytest.approx(
        (persistent + volatile) * ACTIVE_SECONDS * 0.000123
        + (persistent + volatile) * room * ACTIVE_SECONDS * 0.000033
        + stored * 8.0
    )
    mau_plan = vendors["PubNub (MAU plans)"]
    assert (mau_plan.usd, mau_plan.plan) == (98.0, "Starter (ASSUMED price)")


def test_each_lever_changes_exactly_its_components(prices, small):
    stack, profile, _ = small
    results = {lever.name[:3]: lever for lever in levers(stack, profile, prices)}
    fixed = {line.component for line in results["(a)"].baseline.lines if line.kind == FIXED}

    assert set(results["(c)"].changed_components()) == {
        "NAT gateway hours",
        "Public IPv4 addresses (NAT Elastic IPs)",
        "Cross-AZ transfer: Lambda to NAT",
    }
    assert results["(c)"].variant.stack.nat_gateways == 2
    assert results["(c)"].changed_components()["NAT gateway hours"] == pytest.approx(HOURS * 0.045)

    assert set(results["(d)"].changed_components()) == {"ElastiCache nodes"}
    assert results["(d)"].delta == pytest.approx(2 * HOURS * (0.219 - 0.032))

    coalesced = results["(b)"].changed_components()
    assert "API Gateway messages" in coalesced and coalesced["API Gateway messages"] < 0
    assert not set(coalesced) & fixed

    cursors = results["(a)"].changed_components()
    assert "NAT data processing (fan-out to @connections)" in cursors  # logged frames carry seq, eid, prev
    assert not set(cursors) & fixed
    # A logged cursor is acknowledged, so it goes back to its sender too: one message more per cursor.
    assert cursors["API Gateway messages"] > 0


def test_the_profiles_ping_as_often_as_the_clients_send_telemetry():
    from classwire.settings import TELEMETRY_INTERVAL_SECONDS

    js = (ROOT / "clients" / "js" / "classwire.js").read_text()
    py = (ROOT / "clients" / "python" / "classwire_client" / "__init__.py").read_text()
    assert f"telemetryIntervalMs: {TELEMETRY_INTERVAL_SECONDS}_000" in js
    assert f"telemetry_interval: float | None = {TELEMETRY_INTERVAL_SECONDS}.0" in py
    for path in sorted((ROOT / "cost" / "profiles").glob("*.toml")):
        assert load_profile(path).ping_interval_seconds == TELEMETRY_INTERVAL_SECONDS, path.name


def test_platform_log_lines_are_priced_only_below_a_warn_system_log_level(prices):
    document = synthetic_stack()
    info = estimate(StackFacts.from_json(document, name="info"), synthetic_profile(), prices)
    for function in document["resource"]["aws_lambda_function"].values():
        function["logging_config"]["system_log_level"] = "WARN"
    warn = estimate(StackFacts.from_json(document, name="warn"), synthetic_profile(), prices)
    ingested = "CloudWatch Logs ingestion: Lambda"
    quantity = {line.component: line.quantity for line in info.lines}[ingested]
    saved = quantity - {line.component: line.quantity for line in warn.lines}[ingested]
    profile = synthetic_profile()
    invocations = {line.component: line.quantity for line in info.lines}["Lambda requests"]
    per_invocation = profile.logs.platform_bytes_per_invocation + 2 * LOG_EVENT_OVERHEAD_BYTES
    assert saved == pytest.approx(invocations * per_invocation / 1024**3)
    assert warn.total < info.total


def test_the_stacks_drop_the_platform_lines(synthesized):
    for name, document in synthesized.items():
        facts = StackFacts.from_json(document, name=name)
        assert facts.functions and not any(f.platform_lines for f in facts.functions.values())


def test_batching_replays_the_flushers_rule():
    # A quiet room: almost every event has a round of its own; a linger or a busy room shares them.
    assert batching(0.0, 13.0).messages_per_event == 1.0
    assert batching(1.0, 13.0).messages_per_event > 0.99
    quiet, lingering = batching(5.0, 13.0), batching(5.0, 13.0, 200.0)
    assert lingering.messages_per_event < 0.55 < quiet.messages_per_event
    # Lingering, most flushers post one round: what came during the linger.
    assert 0.9 * lingering.messages_per_event < lingering.flushes_per_event <= lingering.messages_per_event
    # Saturated: a round every 13 ms whatever the rate, so messages per event fall as 1 / (rate x round).
    assert batching(1000.0, 13.0).messages_per_event == pytest.approx(1 / 13, rel=0.15)


def test_a_profile_based_on_another_takes_its_tables_but_lists_its_own_events(tmp_path):
    base = load_profile(DEFAULT_PROFILE)
    tutoring = load_profile(ROOT / "cost" / "profiles" / "tutoring_1to1.toml")
    assert tutoring.ids == base.ids and tutoring.lambda_timing == base.lambda_timing  # inherited
    assert tutoring.classrooms == 500 and tutoring.events["stroke"].per_member_per_second == 1.0  # its own
    (tmp_path / "a.toml").write_text('based_on = "b.toml"\n')
    (tmp_path / "b.toml").write_text('based_on = "a.toml"\n')
    with pytest.raises(ValueError, match="cycle"):
        load_profile(tmp_path / "a.toml")
    # A profile that lists events lists them all: none of the base's kinds leak in.
    heavy = load_profile(ROOT / "cost" / "profiles" / "connection_heavy.toml")
    assert "erase" in base.events and "erase" not in heavy.events


def test_every_profile_against_every_service_with_the_targets(prices, tmp_path):
    from cost.summary import PROFILE_ORDER, summarize, targets, write_summary

    stack = StackFacts.from_json(synthetic_stack(), name="synthetic")
    results = summarize(stack, prices)
    assert [r.profile.name for r in results] == list(PROFILE_ORDER)
    checks = {name: met for name, met, _ in targets(results)}
    assert "mid_size_school: at least 3x below Ably" in checks and "lecture_300: below Pusher" in checks
    assert len(checks) == 5 + 2 + 2 + 1  # AppSync for all, Ably for the groups, Pusher for two, the share
    markdown, svg = write_summary("test", results, tmp_path)
    text = markdown.read_text()
    for name in PROFILE_ORDER:
        assert f"| {name} |" in text
    assert "## Targets" in text and svg.read_text().startswith("<svg")
