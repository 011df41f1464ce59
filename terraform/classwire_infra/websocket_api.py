"""WebSocketApi: the API Gateway v2 WebSocket API built from `classwire.routes` (the table the handlers and
the local gateway use), its REQUEST authorizer on `$connect`, a throttled stage with JSON access logs, a
deployment recreated whenever routes, integrations or the authorizer change, and an optional custom domain.
"""

from __future__ import annotations

import json

from cdktf import Fn, TerraformResourceLifecycle
from cdktf_cdktf_provider_aws.apigatewayv2_api import Apigatewayv2Api
from cdktf_cdktf_provider_aws.apigatewayv2_api_mapping import Apigatewayv2ApiMapping
from cdktf_cdktf_provider_aws.apigatewayv2_authorizer import Apigatewayv2Authorizer
from cdktf_cdktf_provider_aws.apigatewayv2_deployment import Apigatewayv2Deployment
from cdktf_cdktf_provider_aws.apigatewayv2_domain_name import (
    Apigatewayv2DomainName,
    Apigatewayv2DomainNameDomainNameConfiguration,
)
from cdktf_cdktf_provider_aws.apigatewayv2_integration import Apigatewayv2Integration
from cdktf_cdktf_provider_aws.apigatewayv2_route import Apigatewayv2Route
from cdktf_cdktf_provider_aws.apigatewayv2_route_response import Apigatewayv2RouteResponse
from cdktf_cdktf_provider_aws.apigatewayv2_stage import (
    Apigatewayv2Stage,
    Apigatewayv2StageAccessLogSettings,
    Apigatewayv2StageDefaultRouteSettings,
)
from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktf_cdktf_provider_aws.lambda_function import LambdaFunction
from cdktf_cdktf_provider_aws.lambda_permission import LambdaPermission
from constructs import Construct

from classwire import routes

# One JSON object per connect, message and disconnect. The query string (it carries the JWT) and the
# message body are never logged; `$context.authorizer.principalId` is the user id, not the token.
ACCESS_LOG_FORMAT: dict[str, str] = {
    "requestId": "$context.requestId",
    "requestTime": "$context.requestTimeEpoch",
    "apiId": "$context.apiId",
    "stage": "$context.stage",
    "connectionId": "$context.connectionId",
    "connectedAt": "$context.connectedAt",
    "eventType": "$context.eventType",
    "routeKey": "$context.routeKey",
    "messageId": "$context.messageId",
    "status": "$context.status",
    "sourceIp": "$context.identity.sourceIp",
    "principalId": "$context.authorizer.principalId",
    "authorizerError": "$context.authorizer.error",
    "integrationStatus": "$context.integration.status",
    "integrationLatency": "$context.integration.latency",
    "integrationError": "$context.integrationErrorMessage",
    "error": "$context.error.message",
    "errorType": "$context.error.responseType",
    "disconnectStatusCode": "$context.disconnectStatusCode",
    "disconnectReason": "$context.disconnectReason",
}


class WebSocketApi(Construct):
    """Props: names, the functions by route-table name, stage throttling, logs, optional custom domain.

    Attributes: `api_id`, `execution_arn`, `stage_name`, `websocket_url`, `management_endpoint`,
    `custom_domain_target` (the regional domain a DNS alias points at, when a custom domain is set).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        prefix: str,
        region: str,
        functions: dict[str, LambdaFunction],
        stage_name: str,
        throttling_rate_limit: float,
        throttling_burst_limit: int,
        log_retention_days: int,
        kms_key_arn: str,
        custom_domain_name: str | None = None,
        custom_domain_certificate_arn: str | None = None,
    ) -> None:
        super().__init__(scope, id_)
        self.api = Apigatewayv2Api(
            self,
            "api",
            name=prefix,
            protocol_type="WEBSOCKET",
            route_selection_expression=routes.ROUTE_SELECTION_EXPRESSION,
            description=f"{prefix}: classroom real-time messaging",
        )

        authorizer_function = functions[routes.AUTHORIZER.name]
        self.authorizer = Apigatewayv2Authorizer(
            self,
            "authorizer",
            api_id=self.api.id,
            name=f"{prefix}-jwt",
            authorizer_type="REQUEST",
            authorizer_uri=authorizer_function.invoke_arn,
            identity_sources=[routes.AUTHORIZER_IDENTITY_SOURCE],
        )
        LambdaPermission(
            self,
            "authorizer_permission",
            function_name=authorizer_function.function_name,
            action="lambda:InvokeFunction",
            principal="apigateway.amazonaws.com",
            statement_id="AllowApiGatewayAuthorizer",
            source_arn=f"{self.api.execution_arn}/authorizers/{self.authorizer.id}",
        )

        # One integration per function; the routes of one function share it.
        integrations: dict[str, Apigatewayv2Integration] = {}
        for function_name in dict.fromkeys(route.function.name for route in routes.ROUTES):
            integrations[function_name] = Apigatewayv2Integration(
                self,
                f"{function_name}_integration",
                api_id=self.api.id,
                integration_type="AWS_PROXY",
                integration_method="POST",
                integration_uri=functions[function_name].invoke_arn,
                content_handling_strategy="CONVERT_TO_TEXT",
                passthrough_behavior="WHEN_NO_MATCH",
                description=f"{prefix}-{function_name}",
            )

        api_routes: list[Apigatewayv2Route] = []
        route_responses: list[Apigatewayv2RouteResponse] = []
        for route in routes.ROUTES:
            logical = _logical(route.key)
            api_route = Apigatewayv2Route(
                self,
                f"route_{logical}",
                api_id=self.api.id,
                route_key=route.key,
                target=f"integrations/{integrations[route.function.name].id}",
                authorization_type="CUSTOM" if route.authorized else "NONE",
                authorizer_id=self.authorizer.id if route.authorized else None,
                # Two-way routes send the handler's returned body back to the caller.
                route_response_selection_expression="$default" if route.two_way else None,
            )
            api_routes.append(api_route)
            if route.two_way:
                route_responses.append(
                    Apigatewayv2RouteResponse(
                        self,
                        f"route_{logical}_response",
                        api_id=self.api.id,
                        route_id=api_route.id,
                        route_response_key="$default",
                    )
                )
            # API Gateway may invoke the function for this route of this API, nothing else.
            LambdaPermission(
                self,
                f"route_{logical}_permission",
                function_name=functions[route.function.name].function_name,
                action="lambda:InvokeFunction",
                principal="apigateway.amazonaws.com",
                statement_id=f"AllowApiGatewayRoute{logical.title().replace('_', '')}",
                source_arn=f"{self.api.execution_arn}/*/{route.key}",
            )

        # Without a new deployment the stage keeps serving the old routes: hash everything it is made of.
        fingerprint = [
            self.authorizer.id,
            self.authorizer.authorizer_uri,
            Fn.jsonencode(self.authorizer.identity_sources),
            *[value for i in integrations.values() for value in (i.id, i.integration_uri)],
            *[value for r in api_routes for value in (r.id, r.route_key, r.target, r.authorization_type)],
            *[value for r in route_responses for value in (r.id, r.route_response_key)],
        ]
        self.deployment = Apigatewayv2Deployment(
            self,
            "deployment",
            api_id=self.api.id,
            description=f"{prefix} routes, integrations and authorizer",
            triggers={
                "redeployment": Fn.sha1(Fn.jsonencode(fingerprint)),
                "route_table": routes_fingerprint(),
            },
            lifecycle=TerraformResourceLifecycle(create_before_destroy=True),
            depends_on=[*api_routes, *route_responses, *integrations.values(), self.authorizer],
        )

        self.access_log_group = CloudwatchLogGroup(
            self,
            "access_log_group",
            name=f"/{prefix}/api-access",
            retention_in_days=log_retention_days,
            kms_key_id=kms_key_arn,
        )
        self.stage = Apigatewayv2Stage(
            self,
            "stage",
            api_id=self.api.id,
            name=stage_name,
            deployment_id=self.deployment.id,
            description=f"{prefix} stage",
            default_route_settings=Apigatewayv2StageDefaultRouteSettings(
                throttling_rate_limit=throttling_rate_limit,
                throttling_burst_limit=throttling_burst_limit,
                data_trace_enabled=False,  # full message bodies would land in logs
                detailed_metrics_enabled=False,
            ),
            access_log_settings=Apigatewayv2StageAccessLogSettings(
                destination_arn=self.access_log_group.arn,
                format=json.dumps(ACCESS_LOG_FORMAT),
            ),
        )

        self.api_id: str = self.api.id
        self.execution_arn: str = self.api.execution_arn
        self.stage_name = stage_name
        self.websocket_url: str = self.stage.invoke_url
        self.management_endpoint = f"https://{self.api.id}.execute-api.{region}.amazonaws.com/{stage_name}"
        self.custom_domain_target: str | None = None
        if custom_domain_name:
            domain = Apigatewayv2DomainName(
                self,
                "custom_domain",
                domain_name=custom_domain_name,
                domain_name_configuration=Apigatewayv2DomainNameDomainNameConfiguration(
                    certificate_arn=custom_domain_certificate_arn,
                    endpoint_type="REGIONAL",
                    security_policy="TLS_1_2",
                ),
            )
            Apigatewayv2ApiMapping(
                self, "custom_domain_mapping", api_id=self.api.id, domain_name=domain.id, stage=self.stage.id
            )
            self.custom_domain_target = domain.domain_name_configuration.target_domain_name
            self.websocket_url = f"wss://{custom_domain_name}"


def routes_fingerprint() -> str:
    """A hash of the route table as declared: it changes when any route, its function or its flags change."""
    import hashlib

    table = {
        "selection": routes.ROUTE_SELECTION_EXPRESSION,
        "identity": routes.AUTHORIZER_IDENTITY_SOURCE,
        "routes": [
            [r.key, r.function.name, r.function.handler, r.two_way, r.authorized] for r in routes.ROUTES
        ],
    }
    return hashlib.sha256(json.dumps(table, sort_keys=True).encode()).hexdigest()


def _logical(route_key: str) -> str:
    """`$connect` -> `connect`, `$default` -> `default`: construct ids without `$`."""
    return route_key.lstrip("$").replace("-", "_")
