"""CodeBucket: the private S3 bucket the Lambda package is deployed from, and the package's upload.

Functions are created from this object rather than from a local `filename`: the AWS provider holds one
global lock around every function created from a local file (it reads each zip into memory), so four
functions from `filename` are created one after another, each waiting for the previous one to turn
Active. From S3 they are created in parallel.

The package is identified by the base64 SHA-256 of the zip's bytes (what the provider compares), so an
unchanged build neither re-uploads nor redeploys, whatever the file's mtime or the workspace.
"""

from __future__ import annotations

import base64
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

from cdktf_cdktf_provider_aws.s3_object import S3Object
from constructs import Construct

from .private_bucket import PrivateBucket

PACKAGE_KEY = "lambda/classwire-lambda.zip"


class MissingPackageError(FileNotFoundError):
    pass


@dataclass(frozen=True)
class LambdaCode:
    """The shared function zip: the path Terraform reads it from, and the base64 SHA-256 of its bytes."""

    path: str
    sha256_base64: str

    @classmethod
    def from_zip(cls, zip_file: Path, *, relative_to: Path | None = None, env: str = "") -> LambdaCode:
        """Hash the zip now; `relative_to` is the directory Terraform runs in (the synthesized stack's)."""
        if not zip_file.is_file():
            raise MissingPackageError(
                f"the Lambda package {zip_file} does not exist: run `make build ENV={env or '<env>'}` first"
            )
        digest = base64.b64encode(hashlib.sha256(zip_file.read_bytes()).digest()).decode()
        path = os.path.relpath(zip_file.resolve(), relative_to.resolve()) if relative_to else str(zip_file)
        return cls(path=path, sha256_base64=digest)


@dataclass(frozen=True)
class DeployedCode:
    """Where a function's code comes from: exactly one version of the uploaded package."""

    s3_bucket: str
    s3_key: str
    s3_object_version: str
    sha256_base64: str


class CodeBucket(PrivateBucket):
    """Props: the bucket's name, the package, the key encrypting it, and how long a replaced package is
    kept (None: forever). Attribute: `package` (a DeployedCode)."""

    def __init__(
        self,
        scope: Construct,
        id_: str,
        *,
        name: str,
        code: LambdaCode,
        kms_key_arn: str,
        replaced_package_days: int | None,
    ) -> None:
        super().__init__(
            scope,
            id_,
            name=name,
            kms_key_arn=kms_key_arn,
            noncurrent_days=replaced_package_days,
            abort_upload_days=1,
            lifecycle_rule_id="expire-replaced-packages",
            # It holds only packages rebuilt byte for byte from a commit, so a destroy may empty it.
            force_destroy=True,
        )
        package = S3Object(
            self,
            "package",
            bucket=self.bucket.id,
            key=PACKAGE_KEY,
            source=code.path,
            source_hash=code.sha256_base64,
            kms_key_id=kms_key_arn,
            content_type="application/zip",
            # After versioning, so the object has the version id the functions pin.
            depends_on=self.ready,
        )
        self.package = DeployedCode(
            s3_bucket=self.bucket.id,
            s3_key=package.key,
            s3_object_version=package.version_id,
            sha256_base64=code.sha256_base64,
        )
