"""PrivateBucket: an S3 bucket nobody outside the account reaches, for the code bucket and the bootstrap's
state buckets: all four public-access blocks, `BucketOwnerEnforced`, versioning, default encryption, a
TLS-only policy, and replaced versions that expire."""

from __future__ import annotations

import json

from cdktf import TerraformResourceLifecycle
from cdktf_cdktf_provider_aws.s3_bucket import S3Bucket
from cdktf_cdktf_provider_aws.s3_bucket_lifecycle_configuration import (
    S3BucketLifecycleConfiguration,
    S3BucketLifecycleConfigurationRule,
    S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload,
    S3BucketLifecycleConfigurationRuleFilter,
    S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration,
)
from cdktf_cdktf_provider_aws.s3_bucket_ownership_controls import (
    S3BucketOwnershipControls,
    S3BucketOwnershipControlsRule,
)
from cdktf_cdktf_provider_aws.s3_bucket_policy import S3BucketPolicy
from cdktf_cdktf_provider_aws.s3_bucket_public_access_block import S3BucketPublicAccessBlock
from cdktf_cdktf_provider_aws.s3_bucket_server_side_encryption_configuration import (
    S3BucketServerSideEncryptionConfigurationA,
    S3BucketServerSideEncryptionConfigurationRuleA,
    S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA,
)
from cdktf_cdktf_provider_aws.s3_bucket_versioning import (
    S3BucketVersioningA,
    S3BucketVersioningVersioningConfiguration,
)
from constructs import Construct


def tls_only_policy(bucket_arn: str, *, minimum_tls_version: str | None = None) -> dict:
    """Deny every request that does not come over TLS (and, when given, over an older TLS version)."""
    resources = [bucket_arn, f"{bucket_arn}/*"]
    statements = [
        {
            "Sid": "DenyInsecureTransport",
            "Effect": "Deny",
            "Principal": "*",
            "Action": "s3:*",
            "Resource": resources,
            "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        }
    ]
    if minimum_tls_version:
        statements.append(
            {
                "Sid": "DenyOldTls",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": resources,
                "Condition": {"NumericLessThan": {"s3:TlsVersion": minimum_tls_version}},
            }
        )
    return {"Version": "2012-10-17", "Statement": statements}


class PrivateBucket(Construct):
    """Props: the bucket's name; `kms_key_arn` (SSE-KMS with a bucket key; None: SSE-S3); the policy's
    `minimum_tls_version`; `noncurrent_days` after which a replaced version expires (None: no lifecycle
    rule) and `abort_upload_days` for incomplete multipart uploads; `force_destroy`, `prevent_destroy`.

    Attributes: `bucket`; `ready`, what an object write must wait for (versioning, so the object gets a
    version id, and the default encryption).
    """

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name: str,
        kms_key_arn: str | None,
        noncurrent_days: int | None,
        abort_upload_days: int,
        lifecycle_rule_id: str,
        minimum_tls_version: str | None = None,
        force_destroy: bool = False,
        prevent_destroy: bool = False,
    ) -> None:
        super().__init__(scope, id_)
        self.bucket = S3Bucket(
            self,
            "bucket",
            bucket=name,
            force_destroy=force_destroy,
            lifecycle=TerraformResourceLifecycle(prevent_destroy=True) if prevent_destroy else None,
        )
        S3BucketPublicAccessBlock(
            self,
            "public_access_block",
            bucket=self.bucket.id,
            block_public_acls=True,
            block_public_policy=True,
            ignore_public_acls=True,
            restrict_public_buckets=True,
        )
        S3BucketOwnershipControls(
            self,
            "ownership",
            bucket=self.bucket.id,
            rule=S3BucketOwnershipControlsRule(object_ownership="BucketOwnerEnforced"),
        )
        versioning = S3BucketVersioningA(
            self,
            "versioning",
            bucket=self.bucket.id,
            versioning_configuration=S3BucketVersioningVersioningConfiguration(status="Enabled"),
        )
        encryption = S3BucketServerSideEncryptionConfigurationA(
            self,
            "encryption",
            bucket=self.bucket.id,
            rule=[
                S3BucketServerSideEncryptionConfigurationRuleA(
                    apply_server_side_encryption_by_default=(
                        S3BucketServerSideEncryptionConfigurationRuleApplyServerSideEncryptionByDefaultA(
                            sse_algorithm="aws:kms" if kms_key_arn else "AES256",
                            kms_master_key_id=kms_key_arn,
                        )
                    ),
                    bucket_key_enabled=True,
                )
            ],
        )
        S3BucketPolicy(
            self,
            "policy",
            bucket=self.bucket.id,
            policy=json.dumps(tls_only_policy(self.bucket.arn, minimum_tls_version=minimum_tls_version)),
        )
        if noncurrent_days is not None:
            S3BucketLifecycleConfiguration(
                self,
                "lifecycle",
                bucket=self.bucket.id,
                rule=[
                    S3BucketLifecycleConfigurationRule(
                        id=lifecycle_rule_id,
                        status="Enabled",
                        filter=[S3BucketLifecycleConfigurationRuleFilter(prefix="")],
                        noncurrent_version_expiration=[
                            S3BucketLifecycleConfigurationRuleNoncurrentVersionExpiration(
                                noncurrent_days=noncurrent_days
                            )
                        ],
                        abort_incomplete_multipart_upload=[
                            S3BucketLifecycleConfigurationRuleAbortIncompleteMultipartUpload(
                                days_after_initiation=abort_upload_days
                            )
                        ],
                    )
                ],
                depends_on=[versioning],
            )
        self.ready = [versioning, encryption]
