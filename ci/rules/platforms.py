"""Target platforms and how a Rust binary gets built for one.

Pure logic, no engine calls. Brokkr ships `linux/amd64` and `linux/arm64`
images. For each platform this module knows the Rust target triple, the Debian
architecture and multiarch directory, the cross gcc package and linker, the
`kubectl` download architecture and the environment cargo needs to cross-link
against target-architecture system libraries.

`plan_build` decides, for the engine's native platform and a target platform,
whether the builder stages run natively, cross-compile on the native platform
(the default for a foreign target) or run under emulation (only when asked).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ci.errors import BrokkrError


@dataclass(frozen=True)
class PlatformSpec:
    """Everything the build needs to know about one `linux/<arch>` platform."""

    platform: str
    """The OCI platform, e.g. `linux/arm64`."""
    debian_arch: str
    """Debian architecture name, e.g. `arm64` (also Docker's `TARGETARCH`)."""
    rust_target: str
    """Rust target triple, e.g. `aarch64-unknown-linux-gnu`."""
    multiarch: str
    """Debian multiarch tuple, e.g. `aarch64-linux-gnu` (library directory name)."""
    gcc_package: str
    """Debian package of the gcc cross compiler *targeting* this platform."""
    libc_cross_package: str
    """Debian package with this platform's libc headers and crt files for cross-linking."""
    linker: str
    """The cross gcc driver used as cargo's linker, e.g. `aarch64-linux-gnu-gcc`."""
    kubectl_arch: str
    """Architecture segment of the `dl.k8s.io` kubectl download URL."""

    @property
    def linker_env(self) -> str:
        """Cargo's per-target linker variable (`CARGO_TARGET_<TRIPLE>_LINKER`)."""
        return "CARGO_TARGET_" + self.rust_target.upper().replace("-", "_") + "_LINKER"

    @property
    def cc_env(self) -> str:
        """The `cc` crate's per-target C compiler variable, e.g. `CC_aarch64_unknown_linux_gnu`."""
        return "CC_" + self.rust_target.replace("-", "_")

    @property
    def lib_dir(self) -> str:
        """Where Debian puts this architecture's libraries, e.g. `/usr/lib/aarch64-linux-gnu`."""
        return f"/usr/lib/{self.multiarch}"

    @property
    def pkg_config_path(self) -> str:
        """The pkg-config directory of this architecture's `-dev` packages."""
        return f"{self.lib_dir}/pkgconfig"


AMD64 = PlatformSpec(
    platform="linux/amd64",
    debian_arch="amd64",
    rust_target="x86_64-unknown-linux-gnu",
    multiarch="x86_64-linux-gnu",
    gcc_package="gcc-x86-64-linux-gnu",
    libc_cross_package="libc6-dev-amd64-cross",
    linker="x86_64-linux-gnu-gcc",
    kubectl_arch="amd64",
)

ARM64 = PlatformSpec(
    platform="linux/arm64",
    debian_arch="arm64",
    rust_target="aarch64-unknown-linux-gnu",
    multiarch="aarch64-linux-gnu",
    gcc_package="gcc-aarch64-linux-gnu",
    libc_cross_package="libc6-dev-arm64-cross",
    linker="aarch64-linux-gnu-gcc",
    kubectl_arch="arm64",
)

PLATFORMS: Mapping[str, PlatformSpec] = MappingProxyType(
    {AMD64.platform: AMD64, ARM64.platform: ARM64}
)
"""The supported platforms, by canonical name."""

SUPPORTED_PLATFORMS: tuple[str, ...] = tuple(PLATFORMS)
"""`("linux/amd64", "linux/arm64")`: what every image is built for by default."""

# Spellings that name a supported platform with an explicit variant.
_ALIASES: Mapping[str, str] = MappingProxyType({"linux/arm64/v8": "linux/arm64"})


def parse_platform(value: str) -> PlatformSpec:
    """Return the spec of a platform string, normalizing `linux/arm64/v8` to `linux/arm64`.

    Raises `BrokkrError` naming the supported platforms for anything else.
    """
    name = value.strip().lower()
    name = _ALIASES.get(name, name)
    spec = PLATFORMS.get(name)
    if spec is None:
        supported = ", ".join(SUPPORTED_PLATFORMS)
        msg = (
            f"unsupported platform {value!r}: Brokkr images are built for {supported} "
            "(linux/arm64/v8 is accepted as linux/arm64)"
        )
        raise BrokkrError(msg)
    return spec


def parse_platforms(values: list[str] | tuple[str, ...]) -> list[PlatformSpec]:
    """Parse a list of platforms, dropping duplicates (after normalization) in order.

    An empty list is an error: a multi-platform image needs at least one platform.
    """
    if not values:
        msg = f"no platform given; choose one or more of {', '.join(SUPPORTED_PLATFORMS)}"
        raise BrokkrError(msg)
    specs: list[PlatformSpec] = []
    for value in values:
        spec = parse_platform(value)
        if spec not in specs:
            specs.append(spec)
    return specs


def cross_packages(target: PlatformSpec) -> list[str]:
    """Debian packages a native builder installs to cross-compile Brokkr for `target`.

    The cross gcc and libc for linking, plus the target-architecture `-dev`
    packages (Debian multiarch, `:<arch>` qualified) of the libraries Brokkr links.
    """
    return [
        "pkg-config",
        target.gcc_package,
        target.libc_cross_package,
        f"libpq-dev:{target.debian_arch}",
        f"libssl-dev:{target.debian_arch}",
    ]


NATIVE_BUILD_PACKAGES: tuple[str, ...] = ("pkg-config", "libpq-dev", "libssl-dev")
"""Debian packages a builder installs when it compiles for its own architecture."""


def cross_env(target: PlatformSpec) -> dict[str, str]:
    """Environment that points cargo, the `cc` crate, pkg-config and pq-sys at `target`."""
    return {
        target.linker_env: target.linker,
        target.cc_env: target.linker,
        "PKG_CONFIG_ALLOW_CROSS": "1",
        "PKG_CONFIG_PATH": target.pkg_config_path,
        "PQ_LIB_DIR": target.lib_dir,
    }


class BuildMode(enum.Enum):
    """How the builder stages produce a binary for the target platform."""

    NATIVE = "native"
    """The engine's own platform is the target: no cross toolchain (still `--target`)."""
    CROSS = "cross"
    """Builder runs on the engine's platform and cross-compiles with `--target`."""
    EMULATED = "emulated"
    """Every stage runs on the target platform under the engine's emulation."""


@dataclass(frozen=True)
class BuildPlan:
    """Where the Rust builder stages run and which cargo target they build."""

    target: PlatformSpec
    """The platform of the runtime image."""
    mode: BuildMode
    """Native, cross or emulated."""
    native_platform: str
    """The engine's own platform, as the engine reported it."""

    @property
    def build_platform(self) -> str:
        """The platform the planner, cacher and builder containers run on."""
        if self.mode is BuildMode.CROSS:
            return self.native_platform_spec.platform
        return self.target.platform

    @property
    def native_platform_spec(self) -> PlatformSpec:
        """The spec of the engine's platform (only meaningful when it is supported)."""
        return parse_platform(self.native_platform)

    @property
    def target_args(self) -> list[str]:
        """`["--target", triple]` of the target platform, in every mode.

        Cook, clean and build all take it, natively too, so the pipeline runs
        the same cargo commands as the Dockerfiles (which always pass
        `--target "$RUST_TARGET"`) and the binary lands in the same place.
        """
        return ["--target", self.target.rust_target]

    @property
    def release_dir(self) -> str:
        """Cargo's release output directory, relative to the workspace root."""
        return f"target/{self.target.rust_target}/release"


def plan_build(*, native: str, target: str, emulate: bool = False) -> BuildPlan:
    """Decide how to build a Rust binary for `target` on an engine running on `native`.

    * `native == target`: NATIVE, no cross toolchain (cargo still gets `--target`).
    * otherwise, by default: CROSS on the native platform.
    * otherwise, with `emulate=True`: EMULATED, the whole chain on `target`.

    An engine whose own platform is not supported can still build with
    `emulate=True`; without it that is an error naming the supported platforms.
    """
    target_spec = parse_platform(target)
    try:
        native_spec: PlatformSpec | None = parse_platform(native)
    except BrokkrError:
        native_spec = None
    if native_spec == target_spec:
        return BuildPlan(target=target_spec, mode=BuildMode.NATIVE, native_platform=native)
    if emulate:
        return BuildPlan(target=target_spec, mode=BuildMode.EMULATED, native_platform=native)
    if native_spec is None:
        supported = ", ".join(SUPPORTED_PLATFORMS)
        msg = (
            f"the Dagger engine runs on {native!r}, which cannot cross-compile Brokkr "
            f"(cross-compiling works from {supported}); build with emulate enabled instead"
        )
        raise BrokkrError(msg)
    return BuildPlan(target=target_spec, mode=BuildMode.CROSS, native_platform=native)
