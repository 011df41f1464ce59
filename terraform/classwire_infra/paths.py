"""Where the repository keeps its parts and what the build and the synthesis write (the Makefile's paths)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CDKTF_OUT = ROOT / "cdktf.out"


def stack_dir(stack_name: str, out: Path = CDKTF_OUT) -> Path:
    """The directory `synth` writes a stack's cdk.tf.json to (and Terraform runs in)."""
    return out / "stacks" / stack_name
