"""What the local gateway serves: one WebSocket API stage, its routes, authorizer and functions.

`make deploy` builds the manifest from what `terraform apply` created in the emulator; tests and tools
build it from the route table with `Manifest.from_route_table(...)`. On disk it is plain JSON:

    {
      "api_id": "local000001", "stage": "local", "region": "us-east-1", "account_id": "123456789012",
      "route_selection_expression": "$request.body.action",
      "authorizer": {"function": "classwire-local-authorizer",
                     "identity_source": ["route.request.querystring.token"]},
      "routes": [{"key": "$connect", "function": "classwire-local-connect", "two_way": false,
                  "authorized": true}, ...],
      "functions": {"classwire-local-connect": {"handler": "classwire.handlers.connect.handler",
                    "code": "dist/lambda.zip", "environment": {...}, "timeout": 10, "memory": 256}, ...}
    }

`code` is a directory or a zip; a relative path is resolved against the manifest file's directory.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import TypedDict, Unpack

DEFAULT_REGION = "us-east-1"
DEFAULT_ACCOUNT_ID = "123456789012"


@dataclass(frozen=True)
class FunctionSpec:
    """One Lambda function as deployed: handler `module.func`, code directory or zip, configuration."""

    name: str
    handler: str
    code: str
    environment: dict[str, str] = field(default_factory=dict)
    timeout: float = 10.0
    memory: int = 256


class FunctionChanges(TypedDict, total=False):
    """What `Manifest.with_functions` may change in every function (not its name)."""

    handler: str
    code: str
    environment: dict[str, str]
    timeout: float
    memory: int


@dataclass(frozen=True)
class RouteSpec:
    key: str
    function: str
    # A `$default` route response: the handler's returned `body` goes back to the caller.
    two_way: bool = False
    authorized: bool = False


@dataclass(frozen=True)
class AuthorizerSpec:
    """A REQUEST authorizer on `$connect`; every identity source must be present or the caller gets 401."""

    function: str
    identity_source: tuple[str, ...]


@dataclass(frozen=True)
class Manifest:
    functions: dict[str, FunctionSpec]
    routes: tuple[RouteSpec, ...]
    authorizer: AuthorizerSpec | None = None
    api_id: str = "local000001"
    stage: str = "local"
    region: str = DEFAULT_REGION
    account_id: str = DEFAULT_ACCOUNT_ID
    route_selection_expression: str = "$request.body.action"

    def __post_init__(self) -> None:
        names = [route.function for route in self.routes]
        if self.authorizer is not None:
            names.append(self.authorizer.function)
        missing = sorted(set(names) - set(self.functions))
        if missing:
            raise ValueError(f"manifest names functions it does not define: {missing}")
        keys = [route.key for route in self.routes]
        if len(keys) != len(set(keys)):
            raise ValueError(f"manifest has duplicate route keys: {keys}")
        if not self.route_selection_expression.startswith("$request.body."):
            raise ValueError(f"unsupported route selection expression {self.route_selection_expression!r}")

    def route(self, key: str) -> RouteSpec | None:
        return next((route for route in self.routes if route.key == key), None)

    # --- building ---------------------------------------------------------------------------------

    @classmethod
    def from_route_table(
        cls,
        code: str | Path,
        environment: Mapping[str, str] | None = None,
        *,
        routes: ModuleType | None = None,
        function_prefix: str = "classwire-local-",
        timeout: float = 10.0,
        memory: int = 256,
        **api: str,
    ) -> Manifest:
        """The API the route table describes, every function running from `code` with `environment`.

        `routes` defaults to `classwire.routes`; `api` sets api_id, stage, region or account_id.
        """
        if routes is None:
            from classwire import routes as route_table

            routes = route_table
        env = dict(environment or {})
        functions = {
            function_prefix + fn.name: FunctionSpec(
                name=function_prefix + fn.name,
                handler=fn.handler,
                code=str(code),
                environment=env,
                timeout=timeout,
                memory=memory,
            )
            for fn in routes.FUNCTIONS
        }
        return cls(
            functions=functions,
            routes=tuple(
                RouteSpec(r.key, function_prefix + r.function.name, r.two_way, r.authorized)
                for r in routes.ROUTES
            ),
            authorizer=AuthorizerSpec(
                function=function_prefix + routes.AUTHORIZER.name,
                identity_source=(routes.AUTHORIZER_IDENTITY_SOURCE,),
            ),
            route_selection_expression=routes.ROUTE_SELECTION_EXPRESSION,
            **api,
        )

    @classmethod
    def from_terraform_state(cls, state: Mapping, stack_dir: Path) -> Manifest:
        """The API that `terraform apply` created: `state` is `terraform show -json` of the stack.

        Only what API Gateway itself would read is used: the API's route selection expression, each
        route's target integration and authorizer, route responses (two-way routes), the stage, and
        each integrated function's handler, package (the uploaded object it was created from),
        environment, timeout and memory.
        """
        by_type: dict[str, list[dict]] = {}
        for resource in _state_resources(state.get("values", {}).get("root_module", {})):
            by_type.setdefault(resource["type"], []).append(resource["values"])
        (api,) = by_type["aws_apigatewayv2_api"]
        (stage,) = by_type["aws_apigatewayv2_stage"]
        # A function's package is the S3 object version it was created from; the object's `source` is the
        # zip that was uploaded, relative to the stack directory as the provider resolved it.
        uploads = {
            (o["bucket"], o["key"], o["version_id"]): o["source"] for o in by_type.get("aws_s3_object", [])
        }
        functions = {
            fn["invoke_arn"]: FunctionSpec(
                name=fn["function_name"],
                handler=fn["handler"],
                code=str(
                    (stack_dir / uploads[fn["s3_bucket"], fn["s3_key"], fn["s3_object_version"]]).resolve()
                ),
                environment=dict((fn.get("environment") or [{}])[0].get("variables") or {}),
                timeout=float(fn["timeout"]),
                memory=int(fn["memory_size"]),
            )
            for fn in by_type["aws_lambda_function"]
        }
        integrations = {
            i["id"]: functions[i["integration_uri"]].name for i in by_type["aws_apigatewayv2_integration"]
        }
        two_way = {r["route_id"] for r in by_type.get("aws_apigatewayv2_route_response", [])}
        authorizers = {a["id"]: a for a in by_type.get("aws_apigatewayv2_authorizer", [])}
        routes, authorizer = [], None
        for route in sorted(by_type["aws_apigatewayv2_route"], key=lambda r: r["route_key"]):
            authorized = route["authorization_type"] == "CUSTOM"
            if authorized:
                found = authorizers[route["authorizer_id"]]
                authorizer = AuthorizerSpec(
                    function=functions[found["authorizer_uri"]].name,
                    identity_source=tuple(found["identity_sources"]),
                )
            target = route["target"].removeprefix("integrations/")
            routes.append(
                RouteSpec(route["route_key"], integrations[target], route["id"] in two_way, authorized)
            )
        arn_parts = api["arn"].split(":") if api.get("arn") else []
        return cls(
            functions={fn.name: fn for fn in functions.values()},
            routes=tuple(routes),
            authorizer=authorizer,
            api_id=api["id"],
            stage=stage["name"],
            region=arn_parts[3] if len(arn_parts) > 3 else DEFAULT_REGION,
            route_selection_expression=api["route_selection_expression"],
        )

    def with_functions(self, **changes: Unpack[FunctionChanges]) -> Manifest:
        """The same API with `changes` (e.g. environment=..., timeout=...) applied to every function."""
        return replace(self, functions={name: replace(fn, **changes) for name, fn in self.functions.items()})

    # --- JSON -------------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        data = asdict(self)
        data["routes"] = [asdict(route) for route in self.routes]
        if self.authorizer is not None:
            data["authorizer"]["identity_source"] = list(self.authorizer.identity_source)
        return data

    @classmethod
    def from_dict(cls, data: Mapping, base_dir: Path | None = None) -> Manifest:
        def code_path(code: str) -> str:
            path = Path(code)
            return str(path if path.is_absolute() or base_dir is None else (base_dir / path).resolve())

        functions = {}
        for name, fn in data["functions"].items():
            fn = dict(fn)
            fn.setdefault("name", name)
            fn["code"] = code_path(fn["code"])
            fn["environment"] = {str(k): str(v) for k, v in (fn.get("environment") or {}).items()}
            functions[name] = FunctionSpec(**fn)
        authorizer = data.get("authorizer")
        source = (authorizer or {}).get("identity_source", ())
        return cls(
            functions=functions,
            routes=tuple(RouteSpec(**route) for route in data["routes"]),
            authorizer=None
            if authorizer is None
            else AuthorizerSpec(
                function=authorizer["function"],
                identity_source=tuple(part.strip() for part in source.split(","))
                if isinstance(source, str)
                else tuple(source),
            ),
            **{
                key: data[key]
                for key in ("api_id", "stage", "region", "account_id", "route_selection_expression")
                if key in data
            },
        )

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        path = Path(path)
        return cls.from_dict(json.loads(path.read_text()), base_dir=path.resolve().parent)

    def dump(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.to_dict(), indent=2, sort_keys=True) + "\n")
        return path


def _state_resources(module: Mapping) -> Iterator[dict]:
    """Managed resources of a `terraform show -json` module and its children."""
    for resource in module.get("resources", []):
        if resource.get("mode") == "managed":
            yield resource
    for child in module.get("child_modules", []):
        yield from _state_resources(child)
