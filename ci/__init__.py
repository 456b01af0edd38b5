"""brokkr-ci: Brokkr's container image pipeline as a Dagger module.

Builds `brokkr-broker`, `brokkr-agent` and `brokkr-ui` for linux/amd64 and
linux/arm64, computes their tags from a git ref, publishes them to a registry
and inspects what a registry holds.
"""
