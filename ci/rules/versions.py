"""Every pinned version of the image build, in one place.

The Dagger pipeline (`ci/build/rust.py`, `ci/build/ui.py`) and the plain Dockerfiles in
`dockerfiles/` use the same values; `tests/build/test_dockerfiles.py` fails when one
moves without the other.

To move kubectl: change `KUBECTL_VERSION` and both `KUBECTL_SHA256` values to
the ones published at
`https://dl.k8s.io/release/<version>/bin/linux/<arch>/kubectl.sha256`.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

RUST_IMAGE = "rust:1.90-slim-bookworm"
"""Builder base of the broker and agent (planner, cacher, builder)."""

RUNTIME_IMAGE = "debian:bookworm-slim"
"""Runtime base of the broker and agent images."""

NODE_IMAGE = "node:18-alpine"
"""Base of the UI image."""

CARGO_CHEF_VERSION = "0.1.71"
"""cargo-chef, installed once in the shared chef base with `cargo install --locked`."""

CARGO_AUDITABLE_VERSION = "0.7.4"
"""cargo-auditable, installed next to cargo-chef: the builder links with `cargo auditable build`,
which embeds the binary's crate list (`.dep-v0`) that trivy, grype and syft read."""

RUST_AUDIT_INFO_VERSION = "0.5.4"
"""rust-audit-info: reads that crate list back out of a binary for the SBOM
(ci/supply_chain/sbom.py)."""

KUBECTL_VERSION = "v1.34.1"
"""kubectl shipped in the agent image. kubectl supports one minor version either side of its
own, so the agent works with Kubernetes 1.33, 1.34 and 1.35 API servers (docs/reference.md
says so too)."""

KUBECTL_SHA256: Mapping[str, str] = MappingProxyType(
    {
        # https://dl.k8s.io/release/v1.34.1/bin/linux/amd64/kubectl.sha256
        "amd64": "7721f265e18709862655affba5343e85e1980639395d5754473dafaadcaa69e3",
        # https://dl.k8s.io/release/v1.34.1/bin/linux/arm64/kubectl.sha256
        "arm64": "420e6110e3ba7ee5a3927b5af868d18df17aae36b720529ffa4e9e945aa95450",
    }
)
"""Published sha256 of the linux kubectl binary, by kubectl architecture."""

RUNTIME_PACKAGES: tuple[str, ...] = ("ca-certificates", "libpq5", "libssl3", "curl")
"""Debian packages of the broker and agent runtime images."""


def kubectl_url(arch: str) -> str:
    """The `dl.k8s.io` URL of the pinned linux kubectl binary for `arch`."""
    return f"https://dl.k8s.io/release/{KUBECTL_VERSION}/bin/linux/{arch}/kubectl"


def kubectl_checksum(arch: str) -> str:
    """`sha256:<hex>` of the pinned kubectl for `arch`, the form `dag.http(checksum=…)` takes."""
    return f"sha256:{KUBECTL_SHA256[arch]}"
