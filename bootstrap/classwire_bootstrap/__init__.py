"""The once-per-AWS-account foundation the pipeline stands on: state buckets, GitHub's OIDC provider, roles."""
