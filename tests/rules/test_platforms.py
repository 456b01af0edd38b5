"""Platform parsing, per-platform toolchain facts and the native/cross/emulated decision."""

import pytest

from ci.errors import BrokkrError
from ci.rules.platforms import (
    AMD64,
    ARM64,
    NATIVE_BUILD_PACKAGES,
    SUPPORTED_PLATFORMS,
    BuildMode,
    cross_env,
    cross_packages,
    parse_platform,
    parse_platforms,
    plan_build,
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("linux/amd64", AMD64),
        ("linux/arm64", ARM64),
        ("linux/arm64/v8", ARM64),
        (" Linux/ARM64 ", ARM64),
    ],
)
def test_parse_platform_accepts_supported_spellings(value, expected):
    assert parse_platform(value) == expected


@pytest.mark.parametrize(
    "value", ["linux/arm/v7", "darwin/arm64", "amd64", "", "linux/amd64/v2", "linux/arm64/v9"]
)
def test_parse_platform_rejects_others_naming_the_supported_list(value):
    with pytest.raises(BrokkrError) as err:
        parse_platform(value)
    message = str(err.value)
    assert repr(value) in message
    assert "linux/amd64" in message
    assert "linux/arm64" in message


def test_supported_platforms_are_amd64_and_arm64():
    assert SUPPORTED_PLATFORMS == ("linux/amd64", "linux/arm64")


def test_parse_platforms_normalizes_and_deduplicates_in_order():
    specs = parse_platforms(["linux/arm64/v8", "linux/amd64", "linux/arm64"])
    assert [s.platform for s in specs] == ["linux/arm64", "linux/amd64"]


def test_parse_platforms_rejects_an_empty_list():
    with pytest.raises(BrokkrError, match="no platform"):
        parse_platforms([])


def test_amd64_facts():
    assert AMD64.rust_target == "x86_64-unknown-linux-gnu"
    assert AMD64.debian_arch == "amd64"
    assert AMD64.kubectl_arch == "amd64"
    assert AMD64.gcc_package == "gcc-x86-64-linux-gnu"
    assert AMD64.linker == "x86_64-linux-gnu-gcc"
    assert AMD64.linker_env == "CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_LINKER"
    assert AMD64.pkg_config_path == "/usr/lib/x86_64-linux-gnu/pkgconfig"


def test_arm64_facts():
    assert ARM64.rust_target == "aarch64-unknown-linux-gnu"
    assert ARM64.debian_arch == "arm64"
    assert ARM64.kubectl_arch == "arm64"
    assert ARM64.gcc_package == "gcc-aarch64-linux-gnu"
    assert ARM64.linker == "aarch64-linux-gnu-gcc"
    assert ARM64.linker_env == "CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER"
    assert ARM64.cc_env == "CC_aarch64_unknown_linux_gnu"
    assert ARM64.pkg_config_path == "/usr/lib/aarch64-linux-gnu/pkgconfig"


def test_cross_env_points_cargo_and_pkg_config_at_the_target():
    env = cross_env(ARM64)
    assert env["CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER"] == "aarch64-linux-gnu-gcc"
    assert env["CC_aarch64_unknown_linux_gnu"] == "aarch64-linux-gnu-gcc"
    assert env["PKG_CONFIG_ALLOW_CROSS"] == "1"
    assert env["PKG_CONFIG_PATH"] == "/usr/lib/aarch64-linux-gnu/pkgconfig"
    assert env["PQ_LIB_DIR"] == "/usr/lib/aarch64-linux-gnu"


def test_cross_packages_are_the_cross_gcc_and_target_arch_dev_libraries():
    packages = cross_packages(ARM64)
    assert "gcc-aarch64-linux-gnu" in packages
    assert "libpq-dev:arm64" in packages
    assert "libssl-dev:arm64" in packages
    assert "pkg-config" in packages
    # Native builds never install a cross toolchain or arch-qualified packages.
    assert not any(":" in p or p.startswith("gcc-") for p in NATIVE_BUILD_PACKAGES)


def test_plan_native_when_target_is_the_engine_platform():
    plan = plan_build(native="linux/amd64", target="linux/amd64")
    assert plan.mode is BuildMode.NATIVE
    assert plan.build_platform == "linux/amd64"
    # The Dockerfiles always pass --target; so does the native plan.
    assert plan.target_args == ["--target", "x86_64-unknown-linux-gnu"]
    assert plan.release_dir == "target/x86_64-unknown-linux-gnu/release"


def test_plan_native_ignores_emulate_and_the_v8_variant():
    plan = plan_build(native="linux/arm64/v8", target="linux/arm64", emulate=True)
    assert plan.mode is BuildMode.NATIVE
    assert plan.build_platform == "linux/arm64"


def test_plan_cross_builds_on_the_native_platform_with_the_target_triple():
    plan = plan_build(native="linux/amd64", target="linux/arm64")
    assert plan.mode is BuildMode.CROSS
    assert plan.build_platform == "linux/amd64"
    assert plan.target.platform == "linux/arm64"
    assert plan.target_args == ["--target", "aarch64-unknown-linux-gnu"]
    assert plan.release_dir == "target/aarch64-unknown-linux-gnu/release"


def test_plan_cross_from_arm64_to_amd64():
    plan = plan_build(native="linux/arm64", target="linux/amd64")
    assert plan.mode is BuildMode.CROSS
    assert plan.build_platform == "linux/arm64"
    assert plan.target_args == ["--target", "x86_64-unknown-linux-gnu"]


def test_plan_emulated_runs_everything_on_the_target():
    plan = plan_build(native="linux/amd64", target="linux/arm64", emulate=True)
    assert plan.mode is BuildMode.EMULATED
    assert plan.build_platform == "linux/arm64"
    assert plan.target_args == ["--target", "aarch64-unknown-linux-gnu"]
    assert plan.release_dir == "target/aarch64-unknown-linux-gnu/release"


def test_plan_from_an_unsupported_engine_platform_needs_emulation():
    with pytest.raises(BrokkrError, match=r"linux/riscv64.*emulate"):
        plan_build(native="linux/riscv64", target="linux/arm64")
    plan = plan_build(native="linux/riscv64", target="linux/arm64", emulate=True)
    assert plan.mode is BuildMode.EMULATED


def test_plan_rejects_an_unsupported_target():
    with pytest.raises(BrokkrError, match="linux/s390x"):
        plan_build(native="linux/amd64", target="linux/s390x")


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            AMD64,
            [
                "pkg-config",
                "gcc-x86-64-linux-gnu",
                "libc6-dev-amd64-cross",
                "libpq-dev:amd64",
                "libssl-dev:amd64",
            ],
        ),
        (
            ARM64,
            [
                "pkg-config",
                "gcc-aarch64-linux-gnu",
                "libc6-dev-arm64-cross",
                "libpq-dev:arm64",
                "libssl-dev:arm64",
            ],
        ),
    ],
    ids=["amd64", "arm64"],
)
def test_cross_packages_exactly(spec, expected):
    # Debian's cross libc for each target (crt files and headers the cross gcc links
    # against); an arm64 engine building amd64 needs libc6-dev-amd64-cross.
    assert cross_packages(spec) == expected


@pytest.mark.parametrize("value", ["linux/riscv64", "windows/amd64", "amd64", ""])
def test_platform_errors_name_the_value_they_reject(value):
    with pytest.raises(BrokkrError) as caught:
        parse_platform(value)
    assert f"unsupported platform {value!r}" in str(caught.value)
