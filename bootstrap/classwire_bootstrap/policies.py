"""The IAM documents of the bootstrap, as plain dicts (what the tests read and Terraform receives as JSON).

Roles, per environment:
- deploy (`classwire-ci-<env>-deploy`): assumed only by jobs running in the GitHub Environment `<env>`. Reads
  everything (AWS's ReadOnlyAccess, for Terraform's refresh) and writes only what the stack names
  `classwire-<env>-*`, plus the things AWS names itself (VPC parts, KMS keys: limited by region and tags).
- plan (`classwire-ci-<env>-plan`): assumed by pull-request jobs and by main-branch jobs without an environment
  (deploy.yml's plan jobs, the nightly drift plan). ReadOnlyAccess plus the state object; it cannot write
  the state's lock file, so those plans run with `-lock=false`, and secrets stay unreadable to PR code.
"""

from __future__ import annotations

from classwire_infra.config import load

from .config import GITHUB_OIDC_HOST, PROJECT, STS_AUDIENCE, BootstrapConfig

VERSION = "2012-10-17"
READ_ONLY_POLICY = "arn:{partition}:iam::aws:policy/ReadOnlyAccess"
# The only managed policies the stack attaches to its own roles (terraform/classwire_infra/functions.py).
STACK_MANAGED_POLICIES = ("service-role/AWSLambdaVPCAccessExecutionRole", "AWSXRayDaemonWriteAccess")


def trust_policy(config: BootstrapConfig, subjects: tuple[str, ...]) -> dict:
    """Only GitHub's OIDC tokens for this repository and these subjects, issued for STS."""
    return {
        "Version": VERSION,
        "Statement": [
            {
                "Sid": "GitHubActions",
                "Effect": "Allow",
                "Principal": {"Federated": config.oidc_provider_arn},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{GITHUB_OIDC_HOST}:aud": STS_AUDIENCE,
                        f"{GITHUB_OIDC_HOST}:sub": subjects[0] if len(subjects) == 1 else list(subjects),
                    }
                },
            }
        ],
    }


def _state_statements(config: BootstrapConfig, env: str, *, write: bool) -> list[dict]:
    state = config.state(env)
    bucket = f"arn:{config.partition}:s3:::{state.bucket}"
    objects = [f"{bucket}/{state.key}"] + ([f"{bucket}/{state.key}.tflock"] if write else [])
    return [
        {"Sid": "StateList", "Effect": "Allow", "Action": ["s3:ListBucket"], "Resource": [bucket]},
        {
            "Sid": "StateObjects",
            "Effect": "Allow",
            "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"] if write else ["s3:GetObject"],
            "Resource": objects,
        },
    ]


def plan_policy(config: BootstrapConfig, env: str) -> dict:
    """On top of ReadOnlyAccess: the state, and explicit denials of what PR code must never read or write."""
    state = config.state(env)
    bucket = f"arn:{config.partition}:s3:::{state.bucket}"
    return {
        "Version": VERSION,
        "Statement": [
            *_state_statements(config, env, write=False),
            {
                "Sid": "NoSecretValues",
                "Effect": "Deny",
                "Action": [
                    "secretsmanager:GetSecretValue",
                    "ssm:GetParameter",
                    "ssm:GetParameters",
                    "ssm:GetParametersByPath",
                    "kms:Decrypt",
                ],
                "Resource": "*",
            },
            {
                "Sid": "NoStateWrites",
                "Effect": "Deny",
                "Action": ["s3:PutObject", "s3:DeleteObject", "s3:DeleteObjectVersion"],
                "Resource": [f"{bucket}/*"],
            },
        ],
    }


def deploy_policy(config: BootstrapConfig, env: str) -> dict:
    """What `terraform apply` of the classwire-<env> stack creates, changes and deletes, scoped to its names."""
    p, account, region = config.partition, config.account_id, config.region
    prefix = f"{PROJECT}-{env}"

    def arn(service: str, resource: str, *, in_region: bool = True) -> str:
        return f"arn:{p}:{service}:{region if in_region else ''}:{account}:{resource}"

    in_region = {"StringEquals": {"aws:RequestedRegion": region}}
    code_bucket = f"arn:{p}:s3:::{load(env).code_bucket_name(account)}"
    own_tags = {"StringEquals": {"aws:ResourceTag/project": PROJECT, "aws:ResourceTag/environment": env}}
    return {
        "Version": VERSION,
        "Statement": [
            *_state_statements(config, env, write=True),
            {
                "Sid": "Network",
                "Effect": "Allow",
                "Resource": "*",
                "Condition": in_region,
                "Action": [
                    "ec2:CreateVpc",
                    "ec2:DeleteVpc",
                    "ec2:ModifyVpcAttribute",
                    "ec2:CreateSubnet",
                    "ec2:DeleteSubnet",
                    "ec2:ModifySubnetAttribute",
                    "ec2:CreateRouteTable",
                    "ec2:DeleteRouteTable",
                    "ec2:AssociateRouteTable",
                    "ec2:DisassociateRouteTable",
                    "ec2:CreateRoute",
                    "ec2:DeleteRoute",
                    "ec2:ReplaceRoute",
                    "ec2:CreateInternetGateway",
                    "ec2:DeleteInternetGateway",
                    "ec2:AttachInternetGateway",
                    "ec2:DetachInternetGateway",
                    "ec2:AllocateAddress",
                    "ec2:ReleaseAddress",
                    "ec2:DisassociateAddress",
                    "ec2:CreateNatGateway",
                    "ec2:DeleteNatGateway",
                    "ec2:CreateSecurityGroup",
                    "ec2:DeleteSecurityGroup",
                    "ec2:AuthorizeSecurityGroupIngress",
                    "ec2:AuthorizeSecurityGroupEgress",
                    "ec2:RevokeSecurityGroupIngress",
                    "ec2:RevokeSecurityGroupEgress",
                    "ec2:ModifySecurityGroupRules",
                    "ec2:UpdateSecurityGroupRuleDescriptionsIngress",
                    "ec2:UpdateSecurityGroupRuleDescriptionsEgress",
                    "ec2:CreateFlowLogs",
                    "ec2:DeleteFlowLogs",
                    "ec2:CreateTags",
                    "ec2:DeleteTags",
                    # Lambda's VPC ENIs are deleted by Lambda, but a destroy waits on security groups they hold.
                    "ec2:DeleteNetworkInterface",
                ],
            },
            {
                "Sid": "Cache",
                "Effect": "Allow",
                "Action": [
                    "elasticache:CreateReplicationGroup",
                    "elasticache:ModifyReplicationGroup",
                    "elasticache:DeleteReplicationGroup",
                    "elasticache:IncreaseReplicaCount",
                    "elasticache:DecreaseReplicaCount",
                    "elasticache:CreateCacheSubnetGroup",
                    "elasticache:ModifyCacheSubnetGroup",
                    "elasticache:DeleteCacheSubnetGroup",
                    "elasticache:CreateCacheParameterGroup",
                    "elasticache:ModifyCacheParameterGroup",
                    "elasticache:DeleteCacheParameterGroup",
                    "elasticache:CreateUser",
                    "elasticache:ModifyUser",
                    "elasticache:DeleteUser",
                    "elasticache:CreateUserGroup",
                    "elasticache:ModifyUserGroup",
                    "elasticache:DeleteUserGroup",
                    "elasticache:AddTagsToResource",
                    "elasticache:RemoveTagsFromResource",
                    "elasticache:CreateCacheCluster",
                ],
                "Resource": [
                    arn("elasticache", f"replicationgroup:{prefix}*"),
                    arn("elasticache", f"cluster:{prefix}*"),
                    arn("elasticache", f"subnetgroup:{prefix}*"),
                    arn("elasticache", f"parametergroup:{prefix}*"),
                    arn("elasticache", f"user:{prefix}*"),
                    arn("elasticache", f"usergroup:{prefix}*"),
                    # Creating a replication group also names its subnets, security groups and snapshot window.
                    arn("ec2", "subnet/*"),
                    arn("ec2", "security-group/*"),
                ],
            },
            {
                "Sid": "CacheServiceLinkedRole",
                "Effect": "Allow",
                "Action": ["iam:CreateServiceLinkedRole"],
                "Resource": f"arn:{p}:iam::{account}:role/aws-service-role/elasticache.amazonaws.com/*",
                "Condition": {"StringEquals": {"iam:AWSServiceName": "elasticache.amazonaws.com"}},
            },
            {
                "Sid": "Functions",
                "Effect": "Allow",
                "Action": [
                    "lambda:CreateFunction",
                    "lambda:DeleteFunction",
                    "lambda:UpdateFunctionCode",
                    "lambda:UpdateFunctionConfiguration",
                    "lambda:PublishVersion",
                    "lambda:AddPermission",
                    "lambda:RemovePermission",
                    "lambda:PutFunctionConcurrency",
                    "lambda:DeleteFunctionConcurrency",
                    "lambda:TagResource",
                    "lambda:UntagResource",
                ],
                "Resource": [arn("lambda", f"function:{prefix}-*")],
            },
            {
                "Sid": "CodeBucket",
                "Effect": "Allow",
                "Action": [
                    "s3:CreateBucket",
                    "s3:DeleteBucket",
                    "s3:PutBucketTagging",
                    "s3:PutBucketPolicy",
                    "s3:DeleteBucketPolicy",
                    "s3:PutBucketVersioning",
                    "s3:PutEncryptionConfiguration",
                    "s3:PutBucketPublicAccessBlock",
                    "s3:PutBucketOwnershipControls",
                    "s3:PutLifecycleConfiguration",
                    "s3:ListBucketVersions",
                    "s3:PutObject",
                    "s3:PutObjectTagging",
                    # Lambda reads the package with the caller's permissions when it creates or updates a function.
                    "s3:GetObject",
                    "s3:GetObjectVersion",
                    "s3:DeleteObject",
                    "s3:DeleteObjectVersion",
                ],
                "Resource": [code_bucket, f"{code_bucket}/*"],
            },
            {
                "Sid": "WebSocketApi",
                "Effect": "Allow",
                "Action": [
                    "apigateway:POST",
                    "apigateway:PUT",
                    "apigateway:PATCH",
                    "apigateway:DELETE",
                    "apigateway:TagResource",
                    "apigateway:UntagResource",
                ],
                "Resource": [
                    f"arn:{p}:apigateway:{region}::/apis",
                    f"arn:{p}:apigateway:{region}::/apis/*",
                    f"arn:{p}:apigateway:{region}::/domainnames",
                    f"arn:{p}:apigateway:{region}::/domainnames/*",
                    f"arn:{p}:apigateway:{region}::/tags/*",
                ],
            },
            {
                "Sid": "Logs",
                "Effect": "Allow",
                "Action": [
                    "logs:CreateLogGroup",
                    "logs:DeleteLogGroup",
                    "logs:PutRetentionPolicy",
                    "logs:DeleteRetentionPolicy",
                    "logs:AssociateKmsKey",
                    "logs:DisassociateKmsKey",
                    "logs:TagResource",
                    "logs:UntagResource",
                    "logs:TagLogGroup",
                    "logs:UntagLogGroup",
                ],
                "Resource": [
                    arn("logs", f"log-group:/aws/lambda/{prefix}-*"),
                    arn("logs", f"log-group:/{prefix}/*"),
                ],
            },
            # API Gateway's access logging writes through log deliveries, which have no resource ARN.
            {
                "Sid": "LogDelivery",
                "Effect": "Allow",
                "Resource": "*",
                "Condition": in_region,
                "Action": [
                    "logs:CreateLogDelivery",
                    "logs:UpdateLogDelivery",
                    "logs:DeleteLogDelivery",
                    "logs:PutResourcePolicy",
                ],
            },
            {
                "Sid": "Alarms",
                "Effect": "Allow",
                "Action": [
                    "cloudwatch:PutMetricAlarm",
                    "cloudwatch:DeleteAlarms",
                    "cloudwatch:TagResource",
                    "cloudwatch:UntagResource",
                    "cloudwatch:PutDashboard",
                    "cloudwatch:DeleteDashboards",
                ],
                "Resource": [
                    arn("cloudwatch", f"alarm:{prefix}-*"),
                    f"arn:{p}:cloudwatch::{account}:dashboard/{prefix}*",
                ],
            },
            {
                "Sid": "AlarmTopic",
                "Effect": "Allow",
                "Action": [
                    "sns:CreateTopic",
                    "sns:DeleteTopic",
                    "sns:SetTopicAttributes",
                    "sns:Subscribe",
                    "sns:Unsubscribe",
                    "sns:TagResource",
                    "sns:UntagResource",
                ],
                "Resource": [arn("sns", f"{prefix}-*")],
            },
            {
                "Sid": "KeyCreate",
                "Effect": "Allow",
                "Action": ["kms:CreateKey"],
                "Resource": "*",
                "Condition": {
                    "StringEquals": {
                        "aws:RequestedRegion": region,
                        "aws:RequestTag/project": PROJECT,
                        "aws:RequestTag/environment": env,
                    }
                },
            },
            {
                "Sid": "KeyManage",
                "Effect": "Allow",
                "Action": [
                    "kms:PutKeyPolicy",
                    "kms:EnableKeyRotation",
                    "kms:DisableKeyRotation",
                    "kms:UpdateKeyDescription",
                    "kms:ScheduleKeyDeletion",
                    "kms:TagResource",
                    "kms:UntagResource",
                    "kms:CreateGrant",
                    "kms:Decrypt",
                    "kms:Encrypt",
                    "kms:GenerateDataKey",
                    "kms:CreateAlias",
                    "kms:DeleteAlias",
                    "kms:UpdateAlias",
                ],
                "Resource": arn("kms", "key/*"),
                "Condition": own_tags,
            },
            {
                "Sid": "KeyAlias",
                "Effect": "Allow",
                "Action": ["kms:CreateAlias", "kms:DeleteAlias", "kms:UpdateAlias"],
                "Resource": [arn("kms", f"alias/{prefix}*")],
            },
            # GetSecretValue: the smoke test signs its short-lived tokens with dev's HS256 key.
            {
                "Sid": "Secrets",
                "Effect": "Allow",
                "Action": [
                    "secretsmanager:CreateSecret",
                    "secretsmanager:DeleteSecret",
                    "secretsmanager:UpdateSecret",
                    "secretsmanager:TagResource",
                    "secretsmanager:UntagResource",
                    "secretsmanager:GetSecretValue",
                    "secretsmanager:PutResourcePolicy",
                    "secretsmanager:DeleteResourcePolicy",
                ],
                "Resource": [arn("secretsmanager", f"secret:{PROJECT}/{env}/*")],
            },
            {
                "Sid": "FunctionRoles",
                "Effect": "Allow",
                "Action": [
                    "iam:CreateRole",
                    "iam:DeleteRole",
                    "iam:UpdateRole",
                    "iam:UpdateAssumeRolePolicy",
                    "iam:TagRole",
                    "iam:UntagRole",
                    "iam:PutRolePolicy",
                    "iam:DeleteRolePolicy",
                ],
                "Resource": [f"arn:{p}:iam::{account}:role/{prefix}-*"],
            },
            # Only the managed policies the stack itself attaches: no AdministratorAccess on a role it creates.
            {
                "Sid": "FunctionRoleManagedPolicies",
                "Effect": "Allow",
                "Action": ["iam:AttachRolePolicy", "iam:DetachRolePolicy"],
                "Resource": [f"arn:{p}:iam::{account}:role/{prefix}-*"],
                "Condition": {
                    "ArnEquals": {
                        "iam:PolicyARN": [
                            f"arn:{p}:iam::aws:policy/{name}" for name in STACK_MANAGED_POLICIES
                        ]
                    }
                },
            },
            {
                "Sid": "PassFunctionRoles",
                "Effect": "Allow",
                "Action": ["iam:PassRole"],
                "Resource": [f"arn:{p}:iam::{account}:role/{prefix}-*"],
                "Condition": {
                    "StringEquals": {
                        "iam:PassedToService": ["lambda.amazonaws.com", "vpc-flow-logs.amazonaws.com"]
                    }
                },
            },
        ],
    }
