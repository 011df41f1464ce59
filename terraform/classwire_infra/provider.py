"""The hashicorp/aws provider of every classwire stack (the environments' and the account bootstrap's),
for AWS or for the AWS API emulator."""

from __future__ import annotations

from cdktf import TerraformStack
from cdktf_cdktf_provider_aws.provider import AwsProvider, AwsProviderDefaultTags, AwsProviderEndpoints

# The provider line the stacks are written against: any 5.x from 5.99 (the bindings pin 5.99.1).
AWS_PROVIDER_VERSION = "~> 5.99"


def aws_provider(
    stack: TerraformStack,
    *,
    region: str,
    tags: dict[str, str],
    emulator_endpoint: str | None = None,
    emulated_services: tuple[str, ...] = (),
    allowed_account_ids: list[str] | None = None,
) -> AwsProvider:
    """The stack's provider, pinned to AWS_PROVIDER_VERSION. With an emulator endpoint, every service in
    `emulated_services` (the provider's endpoint argument names) is called there instead of AWS."""
    stack.add_override("terraform.required_providers.aws.version", AWS_PROVIDER_VERSION)
    default_tags = [AwsProviderDefaultTags(tags=tags)]
    if emulator_endpoint is None:
        return AwsProvider(
            stack, "aws", region=region, default_tags=default_tags, allowed_account_ids=allowed_account_ids
        )
    endpoint = emulator_endpoint.rstrip("/")
    return AwsProvider(
        stack,
        "aws",
        region=region,
        default_tags=default_tags,
        # The emulator accepts any credentials; these are moto's documented test values.
        access_key="testing",
        secret_key="testing",
        # The account id is asked of the emulator's STS (moto's 123456789012): skipping that leaves the
        # provider without one, so ARNs it builds (the API's execution_arn) lack the account and a rule
        # that references a security group reads back as a cross-account "123456789012/sg-..." change.
        skip_credentials_validation=True,
        skip_requesting_account_id=False,
        skip_metadata_api_check="true",
        s3_use_path_style=True,
        endpoints=[AwsProviderEndpoints(**dict.fromkeys(emulated_services, endpoint))],
    )
