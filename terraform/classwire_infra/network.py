"""Network: a VPC across the configured AZs, public subnets holding only NAT gateways, private subnets for
the Lambdas and Redis, flow logs, and the default security group locked down.

The Lambdas are in the VPC to reach Redis; they reach `@connections`, STS and Secrets Manager through NAT.
(An execute-api interface endpoint with private DNS would break calls to public APIs, so there is none.)
"""

from __future__ import annotations

import json

from cdktf_cdktf_provider_aws.cloudwatch_log_group import CloudwatchLogGroup
from cdktf_cdktf_provider_aws.data_aws_iam_policy_document import (
    DataAwsIamPolicyDocument,
    DataAwsIamPolicyDocumentStatement,
)
from cdktf_cdktf_provider_aws.default_security_group import DefaultSecurityGroup
from cdktf_cdktf_provider_aws.eip import Eip
from cdktf_cdktf_provider_aws.flow_log import FlowLog
from cdktf_cdktf_provider_aws.iam_role import IamRole
from cdktf_cdktf_provider_aws.iam_role_policy import IamRolePolicy
from cdktf_cdktf_provider_aws.internet_gateway import InternetGateway
from cdktf_cdktf_provider_aws.nat_gateway import NatGateway
from cdktf_cdktf_provider_aws.route import Route
from cdktf_cdktf_provider_aws.route_table import RouteTable
from cdktf_cdktf_provider_aws.route_table_association import RouteTableAssociation
from cdktf_cdktf_provider_aws.subnet import Subnet
from cdktf_cdktf_provider_aws.vpc import Vpc
from constructs import Construct


class Network(Construct):
    """Props: AZs, CIDRs, NAT mode, log retention and key. Attributes: `vpc_id`, `private_subnet_ids`,
    `public_subnet_ids`, `nat_gateway_ids`."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        prefix: str,
        availability_zones: tuple[str, ...],
        vpc_cidr: str,
        private_subnet_cidrs: tuple[str, ...],
        public_subnet_cidrs: tuple[str, ...],
        nat_mode: str,
        log_retention_days: int,
        kms_key_arn: str,
    ) -> None:
        super().__init__(scope, id_)
        self.vpc = Vpc(
            self,
            "vpc",
            cidr_block=vpc_cidr,
            enable_dns_support=True,
            enable_dns_hostnames=True,
            tags={"Name": prefix},
        )
        # No rules at all: anything that needs traffic gets its own, named security group.
        DefaultSecurityGroup(
            self, "default_security_group", vpc_id=self.vpc.id, tags={"Name": f"{prefix}-default-unused"}
        )
        igw = InternetGateway(self, "internet_gateway", vpc_id=self.vpc.id, tags={"Name": prefix})

        public_routes = RouteTable(
            self, "public_routes", vpc_id=self.vpc.id, tags={"Name": f"{prefix}-public"}
        )
        Route(
            self,
            "public_default_route",
            route_table_id=public_routes.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=igw.id,
        )

        public_subnets: list[Subnet] = []
        private_subnets: list[Subnet] = []
        for index, az in enumerate(availability_zones):
            public = Subnet(
                self,
                f"public_{az}",
                vpc_id=self.vpc.id,
                availability_zone=az,
                cidr_block=public_subnet_cidrs[index],
                map_public_ip_on_launch=False,
                tags={"Name": f"{prefix}-public-{az}", "tier": "public"},
            )
            RouteTableAssociation(
                self, f"public_{az}_routes", subnet_id=public.id, route_table_id=public_routes.id
            )
            public_subnets.append(public)
            private_subnets.append(
                Subnet(
                    self,
                    f"private_{az}",
                    vpc_id=self.vpc.id,
                    availability_zone=az,
                    cidr_block=private_subnet_cidrs[index],
                    map_public_ip_on_launch=False,
                    tags={"Name": f"{prefix}-private-{az}", "tier": "private"},
                )
            )

        # The NAT switch: one gateway per AZ (each AZ's private subnet uses its own), or one in the first AZ.
        nat_azs = availability_zones if nat_mode == "per_az" else availability_zones[:1]
        nat_gateways: list[NatGateway] = []
        for index, az in enumerate(nat_azs):
            eip = Eip(self, f"nat_{az}_address", domain="vpc", tags={"Name": f"{prefix}-nat-{az}"})
            nat_gateways.append(
                NatGateway(
                    self,
                    f"nat_{az}",
                    allocation_id=eip.allocation_id,
                    subnet_id=public_subnets[index].id,
                    tags={"Name": f"{prefix}-nat-{az}"},
                    depends_on=[igw],
                )
            )
        for index, az in enumerate(availability_zones):
            routes = RouteTable(
                self, f"private_{az}_route_table", vpc_id=self.vpc.id, tags={"Name": f"{prefix}-private-{az}"}
            )
            nat = nat_gateways[index] if nat_mode == "per_az" else nat_gateways[0]
            Route(
                self,
                f"private_{az}_default_route",
                route_table_id=routes.id,
                destination_cidr_block="0.0.0.0/0",
                nat_gateway_id=nat.id,
            )
            RouteTableAssociation(
                self, f"private_{az}_routes", subnet_id=private_subnets[index].id, route_table_id=routes.id
            )

        self._flow_logs(prefix, log_retention_days, kms_key_arn)

        self.vpc_id: str = self.vpc.id
        self.private_subnet_ids: list[str] = [s.id for s in private_subnets]
        self.public_subnet_ids: list[str] = [s.id for s in public_subnets]
        self.nat_gateway_ids: list[str] = [n.id for n in nat_gateways]

    def _flow_logs(self, prefix: str, log_retention_days: int, kms_key_arn: str) -> None:
        log_group = CloudwatchLogGroup(
            self,
            "flow_log_group",
            name=f"/{prefix}/vpc-flow-logs",
            retention_in_days=log_retention_days,
            kms_key_id=kms_key_arn,
        )
        role = IamRole(
            self,
            "flow_log_role",
            name=f"{prefix}-vpc-flow-logs",
            assume_role_policy=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "vpc-flow-logs.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            ),
        )
        policy = DataAwsIamPolicyDocument(
            self,
            "flow_log_policy_document",
            statement=[
                DataAwsIamPolicyDocumentStatement(
                    sid="WriteFlowLogs",
                    actions=["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"],
                    resources=[f"{log_group.arn}:*"],
                ),
            ],
        )
        IamRolePolicy(self, "flow_log_role_policy", name="write-flow-logs", role=role.id, policy=policy.json)
        FlowLog(
            self,
            "flow_log",
            vpc_id=self.vpc.id,
            traffic_type="ALL",
            log_destination_type="cloud-watch-logs",
            log_destination=log_group.arn,
            iam_role_arn=role.arn,
            max_aggregation_interval=60,
            tags={"Name": prefix},
        )
