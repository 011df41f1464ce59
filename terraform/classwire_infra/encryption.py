"""Encryption: the environment's customer managed KMS key, used for every log group, the JWT secret, the
alarm topic, the cache at rest, the Lambdas' environment variables and the code bucket."""

from __future__ import annotations

import json

from cdktf_cdktf_provider_aws.kms_alias import KmsAlias
from cdktf_cdktf_provider_aws.kms_key import KmsKey
from constructs import Construct


class Encryption(Construct):
    """Props: the name prefix, region, account id and partition. Attributes: `key_arn`, `key_id`."""

    def __init__(
        self, scope: Construct, id_: str, *, prefix: str, region: str, account_id: str, partition: str
    ) -> None:
        super().__init__(scope, id_)
        root = f"arn:{partition}:iam::{account_id}:root"
        policy = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    # The key policy AWS writes by default: IAM policies in this account decide who uses the key.
                    "Sid": "AccountAdministersTheKey",
                    "Effect": "Allow",
                    "Principal": {"AWS": root},
                    "Action": "kms:*",
                    "Resource": "*",
                },
                {
                    # CloudWatch Logs encrypts only this account's log groups in this region with it.
                    "Sid": "CloudWatchLogsEncryptsLogGroups",
                    "Effect": "Allow",
                    "Principal": {"Service": f"logs.{region}.amazonaws.com"},
                    "Action": [
                        "kms:Encrypt*",
                        "kms:Decrypt*",
                        "kms:ReEncrypt*",
                        "kms:GenerateDataKey*",
                        "kms:Describe*",
                    ],
                    "Resource": "*",
                    "Condition": {
                        "ArnLike": {
                            "kms:EncryptionContext:aws:logs:arn": f"arn:{partition}:logs:{region}:{account_id}:log-group:*"
                        }
                    },
                },
                {
                    # CloudWatch alarms publish to the encrypted alarm topic.
                    "Sid": "CloudWatchAlarmsPublishToTheEncryptedTopic",
                    "Effect": "Allow",
                    "Principal": {"Service": "cloudwatch.amazonaws.com"},
                    "Action": ["kms:Decrypt", "kms:GenerateDataKey*"],
                    "Resource": "*",
                    "Condition": {"StringEquals": {"aws:SourceAccount": account_id}},
                },
            ],
        }
        self.key = KmsKey(
            self,
            "key",
            description=f"{prefix}: logs, JWT secret, alarm topic, cache at rest, Lambda environment and code",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            policy=json.dumps(policy),
        )
        KmsAlias(self, "alias", name=f"alias/{prefix}", target_key_id=self.key.key_id)
        self.key_arn: str = self.key.arn
        self.key_id: str = self.key.key_id
