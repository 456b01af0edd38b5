"""The Rust release a source asks for, against the pinned Rust image's."""

from __future__ import annotations

import pytest

from ci.errors import BrokkrError
from ci.rules.toolchain import check_fits, release, toolchain_channel, workspace_rust_version
from ci.rules.versions import RUST_IMAGE, RUST_IMAGE_VERSION


def test_the_image_version_is_the_image_tag():
    major, minor = RUST_IMAGE_VERSION
    assert RUST_IMAGE.startswith(f"rust:{major}.{minor}-")


def test_releases_and_named_channels():
    assert release("1.92") == (1, 92)
    assert release(" 1.90.1 ") == (1, 90)
    assert release("stable") is None
    assert release("nightly-2025-01-01") is None


def test_channels_of_both_toolchain_files():
    assert toolchain_channel("rust-toolchain.toml", '[toolchain]\nchannel = "1.93"\n') == "1.93"
    assert toolchain_channel("rust-toolchain.toml", "[toolchain]\n") is None
    assert toolchain_channel("rust-toolchain", "1.91.0\n") == "1.91.0"
    assert toolchain_channel("rust-toolchain", '[toolchain]\nchannel = "stable"\n') == "stable"
    with pytest.raises(BrokkrError, match=r"rust-toolchain\.toml is not valid TOML"):
        toolchain_channel("rust-toolchain.toml", "[toolchain")


def test_workspace_rust_version():
    today = '[workspace]\nmembers = []\n[workspace.package]\nrust-version = "1.90"\n'
    assert workspace_rust_version(today) == "1.90"
    assert workspace_rust_version('[package]\nname = "x"\nrust-version = "1.85"\n') == "1.85"
    # The seed era put rust-version under [workspace], where cargo ignores it.
    assert workspace_rust_version('[workspace]\nrust-version = "1.8"\n') is None


def test_a_newer_requirement_is_refused_naming_both_versions():
    check_fits({"rust-toolchain.toml": "1.90", "Cargo.toml": "1.85", "x": "stable"})
    with pytest.raises(BrokkrError) as info:
        check_fits({"rust-toolchain.toml": "1.95"})
    message = str(info.value)
    assert "Rust 1.95 (rust-toolchain.toml)" in message
    assert f"{RUST_IMAGE} has Rust 1.90" in message
