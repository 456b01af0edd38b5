"""The dependency cache key: what moves it and what must not."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from ci.errors import BrokkrError
from ci.rules import cache_key as ck

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "brokkr"

INPUTS = ck.CookInputs(
    rust_image="rust:1.90-slim-bookworm",
    cargo_chef="0.1.71",
    build_platform="linux/amd64",
    target_platform="linux/arm64",
    target_triple="aarch64-unknown-linux-gnu",
    mode="cross",
    packages=("gcc-aarch64-linux-gnu",),
    env=(("PKG_CONFIG_ALLOW_CROSS", "1"),),
)

SERDE = """
[[package]]
name = "serde"
version = "1.0.210"
source = "registry+https://github.com/rust-lang/crates.io-index"
checksum = "aaaa"
"""


def source_files() -> dict[str, bytes]:
    files = {}
    for path in sorted(FIXTURE.rglob("*")):
        rel = path.relative_to(FIXTURE).as_posix()
        if path.is_file() and (rel.startswith("crates/") or rel in ("Cargo.toml", "Cargo.lock")):
            files[rel] = path.read_bytes()
    return files


def digest(files: dict[str, bytes]) -> str:
    return ck.recipe_digest(files, files)


def bump_versions(files: dict[str, bytes], new: str) -> dict[str, bytes]:
    out = dict(files)
    out["Cargo.toml"] = files["Cargo.toml"].replace(
        b'version = "0.1.0"', f'version = "{new}"'.encode()
    )
    out["Cargo.lock"] = files["Cargo.lock"].replace(
        b'version = "0.1.0"', f'version = "{new}"'.encode()
    )
    return out


def test_a_version_bump_and_a_source_edit_keep_the_recipe():
    files = source_files()
    bumped = bump_versions(files, "0.2.0")
    assert bumped != files
    bumped["crates/brokkr-broker/src/main.rs"] += b"\n// edited\n"
    bumped["Cargo.toml"] += b"\n# a comment\n"
    assert digest(bumped) == digest(files)


def test_a_member_version_in_its_own_manifest_is_masked_too():
    files = source_files()
    manifest = "crates/brokkr-utils/Cargo.toml"
    text = files[manifest].decode().replace("version.workspace = true", 'version = "3.1.4"')
    changed = {**files, manifest: text.encode()}
    other = {**files, manifest: text.replace("3.1.4", "3.1.5").encode()}
    assert digest(changed) == digest(other)


def test_a_dependency_change_in_the_lockfile_changes_the_recipe():
    files = source_files()
    with_serde = {**files, "Cargo.lock": files["Cargo.lock"] + SERDE.encode()}
    newer = {**files, "Cargo.lock": files["Cargo.lock"] + SERDE.replace("210", "211").encode()}
    assert len({digest(files), digest(with_serde), digest(newer)}) == 3
    assert ck.dependency_crates(with_serde["Cargo.lock"].decode()) == 1


def test_a_new_target_file_a_feature_or_a_toolchain_file_changes_the_recipe():
    files = source_files()
    base = digest(files)
    assert digest({**files, "crates/brokkr-broker/src/bin/tool.rs": b"fn main() {}"}) != base
    feature = files["crates/brokkr-broker/Cargo.toml"] + b"\n[features]\nembed-ui = []\n"
    assert digest({**files, "crates/brokkr-broker/Cargo.toml": feature}) != base
    assert digest({**files, "rust-toolchain.toml": b'[toolchain]\nchannel = "1.91"\n'}) != base
    assert digest({**files, ".cargo/config.toml": b"[build]\n"}) != base
    assert digest({**files, "crates/brokkr-models/build.rs": b"fn main() {}"}) != base


def test_every_cook_input_moves_the_key():
    recipe = digest(source_files())
    base = ck.dependency_key(recipe, INPUTS)
    assert len(base) == 64
    variants = [
        ck.dependency_key("sha256:other", INPUTS),
        ck.dependency_key(recipe, replace(INPUTS, rust_image="rust:1.91")),
    ]
    for field, value in [
        ("cargo_chef", "0.1.72"),
        ("build_platform", "linux/arm64"),
        ("target_platform", "linux/amd64"),
        ("target_triple", "x86_64-unknown-linux-gnu"),
        ("mode", "native"),
        ("packages", ("gcc",)),
        ("env", ()),
        ("profile", "dev"),
        ("features", ("embed-ui",)),
    ]:
        variants.append(ck.dependency_key(recipe, replace(INPUTS, **{field: value})))
    assert base not in variants
    assert len(set(variants)) == len(variants)
    # Feature order and repeats do not matter.
    a = replace(INPUTS, features=("b", "a"))
    b = replace(INPUTS, features=("a", "b", "a"))
    assert ck.dependency_key(recipe, a) == ck.dependency_key(recipe, b)


def test_cache_tags_are_told_apart_from_image_tags():
    key = "ab" * 32
    tag = ck.cache_tag("linux/arm64", key)
    assert tag == f"deps-linux-arm64-{key}"
    assert ck.is_cache_tag(tag)
    assert ck.is_cache_tag(ck.cache_tag("linux/arm/v7", key))
    for image_tag in ["1.2.3", "latest", "main", "deps", "deps-main", "pr-4", f"deps-{key}"]:
        assert not ck.is_cache_tag(image_tag)
    tags = ["1.2.3", tag, "latest"]
    assert ck.image_tags(tags, show_cache=False) == ["1.2.3", "latest"]
    assert ck.image_tags(tags, show_cache=True) == tags


@pytest.mark.parametrize("platform", ["linux/amd64", "linux/arm64", "linux/arm/v7"])
def test_a_cache_tag_parses_back_to_its_platform_and_key(platform):
    key = "0f" * 32
    assert ck.parse_cache_tag(ck.cache_tag(platform, key)) == (platform, key)


@pytest.mark.parametrize(
    "tag",
    [
        "deps-main",
        f"deps-{'ab' * 32}",
        f"deps-linux-amd64-{'ab' * 31}a",  # 63 hex
        f"deps-linux-amd64-{'AB' * 32}",
        f"deps-linux-amd64-{'ab' * 32}.sig",
        f"deps-windows-amd64-{'ab' * 32}",
        f"deps-linux-arm-v7-x-{'ab' * 32}",
        f"linux-amd64-{'ab' * 32}",
        "sha256-" + "ab" * 32,
    ],
)
def test_other_tags_are_no_cache_tags(tag):
    assert ck.parse_cache_tag(tag) is None
    assert not ck.is_cache_tag(tag)


def test_the_created_label_dates_a_cache_image_and_is_no_part_of_its_key():
    recipe = "sha256:" + "1" * 64
    key = ck.dependency_key(recipe, INPUTS)
    identity = ck.cache_labels(key, "linux/amd64")
    assert ck.CREATED_LABEL not in identity  # what a lookup checks: no time in it
    for created in ("2026-03-01T09:00:00Z", "1970-01-01T00:00:00Z"):
        labels = ck.cache_labels(key, "linux/amd64", created)
        assert labels == {**identity, ck.CREATED_LABEL: created}
    # The key is a function of the cook's inputs alone: the same for every publish time.
    assert ck.dependency_key(recipe, INPUTS) == key


def test_a_broken_manifest_is_a_clear_error():
    files = {**source_files(), "crates/brokkr-agent/Cargo.toml": b"[package\n"}
    with pytest.raises(BrokkrError, match=r"crates/brokkr-agent/Cargo\.toml is not valid TOML"):
        digest(files)
