"""The local gateway serves what `terraform apply` created, and that is exactly the route table.

The fixture is `terraform show -json` of `classwire-local` applied to the emulator, cut to the
resource types the manifest reads (tests/localcloud/fixtures; refresh it from a `make deploy` run).
"""

import json
from pathlib import Path

from classwire import routes
from localcloud.manifest import Manifest

FIXTURE = Path(__file__).parent / "fixtures" / "classwire-local.state.json"
STACK_DIR = Path("/repo/cdktf.out/stacks/classwire-local")


def applied() -> Manifest:
    return Manifest.from_terraform_state(json.loads(FIXTURE.read_text()), STACK_DIR)


def test_applied_api_is_the_route_table():
    from_state = applied()
    from_table = Manifest.from_route_table("/repo/dist/lambda.zip", {})
    assert sorted(from_state.routes, key=lambda r: r.key) == sorted(from_table.routes, key=lambda r: r.key)
    assert from_state.authorizer == from_table.authorizer
    assert from_state.route_selection_expression == routes.ROUTE_SELECTION_EXPRESSION
    assert {fn.name: fn.handler for fn in from_state.functions.values()} == {
        fn.name: fn.handler for fn in from_table.functions.values()
    }


def test_reads_stage_region_and_function_configuration():
    manifest = applied()
    assert (manifest.stage, manifest.region) == ("local", "us-east-1")
    assert manifest.api_id and manifest.api_id != "local000001"
    message = manifest.functions["classwire-local-message"]
    # The package path in the state is relative to the stack directory, as the provider resolved it.
    assert message.code == "/repo/dist/lambda.zip"
    assert message.environment["CLASSWIRE_REDIS_URL"].startswith("rediss://")
    assert message.environment["POWERTOOLS_SERVICE_NAME"] == "classwire"
    assert (message.timeout, message.memory) == (10.0, 256)


def test_only_routes_with_a_route_response_are_two_way():
    two_way = {route.key for route in applied().routes if route.two_way}
    assert two_way == {route.key for route in routes.ROUTES if route.two_way}
    assert "$connect" not in two_way and "$disconnect" not in two_way
