"""State: where Terraform keeps each environment's state. An S3 object per environment with a native lock
file (`use_lockfile`, Terraform >= 1.10: no DynamoDB table); local state for the local cloud and for any
stack applied to the emulator."""

from __future__ import annotations

from cdktf import LocalBackend, S3Backend, TerraformStack

from .config import StateBackend


def configure_state(stack: TerraformStack, state: StateBackend | None) -> None:
    if state is None:
        # Next to the synthesized stack, where `terraform` runs.
        LocalBackend(stack, path="terraform.tfstate")
        return
    S3Backend(stack, bucket=state.bucket, key=state.key, region=state.region, encrypt=True)
    # cdktf 0.20's S3Backend predates `use_lockfile`; the override writes it into the backend block.
    stack.add_override("terraform.backend.s3.use_lockfile", True)
