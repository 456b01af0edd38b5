"""SBOMs of images really built by a Dagger engine from the fixture workspace.

    pytest -m engine tests/engine

The agent is built for arm64 (cross-compiled) with `cargo auditable build`,
and the pinned syft scans that image in the engine: its crates come out of the
binary's `.dep-v0` section, so the fixture's workspace crates must be there;
its Debian packages must be arm64 ones with upstream qualifiers; kubectl must be
a Go module with its standard library; the document must be valid CycloneDX 1.5.
"""

from __future__ import annotations

import json
from pathlib import Path

from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator

from tests.engine.test_build_engine import FIXTURE, dagger_call, elf_machine, pytestmark

__all__ = ["pytestmark"]  # the engine marker and the skip without a dagger CLI

EM_AARCH64 = 183


def test_agent_sbom_lists_what_the_arm64_image_contains(tmp_path: Path):
    path = tmp_path / "agent.cdx.json"
    dagger_call(
        FIXTURE, "sbom", "--component=agent", "--platform=linux/arm64", "export", f"--path={path}"
    )
    text = path.read_text()
    assert JsonStrictValidator(SchemaVersion.V1_5).validate_str(text) is None
    doc = json.loads(text)
    names = {c["name"]: c for c in doc["components"]}
    # The crates cargo-auditable embedded: the agent and the workspace crate it uses.
    assert names["brokkr-agent"]["purl"].startswith("pkg:cargo/brokkr-agent@")
    assert "brokkr-utils" in names
    # The arm64 image's Debian packages (with their source package) and kubectl's Go data.
    assert "?arch=arm64&distro=debian-12&upstream=postgresql-15" in names["libpq5"]["purl"]
    assert names["libpq5"]["licenses"]
    assert names["stdlib"]["purl"].startswith("pkg:golang/stdlib@")
    assert any(name.startswith("k8s.io/") for name in names)
    assert doc["metadata"]["component"]["properties"] == [
        {"name": "brokkr:platform", "value": "linux/arm64"}
    ]


def test_the_agent_binary_carries_its_crate_list(tmp_path: Path):
    binary = tmp_path / "brokkr-agent"
    dagger_call(
        FIXTURE,
        "build",
        "--component=agent",
        "--platform=linux/arm64",
        "file",
        "--path=/usr/local/bin/brokkr-agent",
        "export",
        f"--path={binary}",
    )
    assert elf_machine(binary) == EM_AARCH64
    assert b".dep-v0" in binary.read_bytes()  # the section cargo-auditable adds
