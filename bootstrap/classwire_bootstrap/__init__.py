"""The once-per-AWS-account foundation the pipeline stands on: state buckets, GitHub's OIDC provider, roles."""

from classwire_infra import provider_bindings

# stack.py imports the provider's bindings before classwire_infra: make them lazy first.
provider_bindings.install()
