"""The SBOM: CycloneDX made from real inputs, and read from the right image.

Real inputs: see tests/support/sbom_inputs.py (a Debian 12 dpkg database, Brokkr's
Cargo.lock resolved into cargo-auditable's format, its UI's npm lockfile).
The graph tests call the module's `sbom` function through the stand-in engine
and check where every input was read from: the runtime image of the platform
asked for, a pinned rust-audit-info on the engine's platform reading the binary
out of that image, which the builder linked with the pinned cargo-auditable.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from ci.errors import BrokkrError
from ci.rules.components import COMPONENTS, Component
from ci.rules.platforms import parse_platform
from ci.rules.versions import CARGO_AUDITABLE_VERSION, KUBECTL_SHA256, RUST_AUDIT_INFO_VERSION
from ci.supply_chain import cyclonedx as _cyclonedx
from tests.support.sbom_inputs import (
    ALPINE_RELEASE,
    APK_INSTALLED,
    answer_image_reads,
    audit_data_from_lock,
    dpkg_status,
    fixture,
)
from tests.support.standin import ModuleCaller, Node, StandInEngine

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sbom"
AGENT = COMPONENTS[Component.AGENT]
UI = COMPONENTS[Component.UI]
AMD64 = parse_platform("linux/amd64")
ARM64 = parse_platform("linux/arm64")
CRATES_IO = "registry+https://github.com/rust-lang/crates.io-index"


def validate(text: str) -> None:
    errors = JsonStrictValidator(SchemaVersion.V1_5).validate_str(text)
    assert errors is None, f"not valid CycloneDX 1.5: {errors}"


def agent_contents(arch: str = "amd64") -> _cyclonedx.ImageContents:
    return _cyclonedx.ImageContents(
        os_release=fixture("os-release"),
        dpkg_status=dpkg_status(arch),
        audit_data=audit_data_from_lock(fixture("Cargo.lock"), "brokkr-agent"),
        kubectl=True,
        tools=[("rust-audit-info", RUST_AUDIT_INFO_VERSION)],
    )


def ui_contents(arch: str = "x86_64") -> _cyclonedx.ImageContents:
    return _cyclonedx.ImageContents(
        os_release=ALPINE_RELEASE,
        apk_installed=APK_INSTALLED.format(arch=arch),
        npm_installed=fixture("package-lock.json.gz"),
        node_version="18.20.8",
    )


def components(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["bom-ref"]: c for c in doc["components"]}


# -- real data, CycloneDX schema ------------------------------------------------------


def test_agent_sbom_from_real_inputs_is_valid_cyclonedx():
    subject = _cyclonedx.Subject(
        "ghcr.io/colliery-io/brokkr-agent", AMD64, version="1.2.3", digest="sha256:" + "ab" * 32
    )
    text = _cyclonedx.render(_cyclonedx.build_document(AGENT, subject, agent_contents()))
    validate(text)
    doc = json.loads(text)
    found = components(doc)
    # The Debian packages of the image, with the distribution and architecture.
    libpq = next(c for c in found.values() if c["name"] == "libpq5")
    assert libpq["purl"].startswith("pkg:deb/debian/libpq5@15.")
    assert libpq["purl"].endswith("?arch=amd64&distro=debian-12")
    libc = next(c for c in found.values() if c["name"] == "libc6")
    assert libc["purl"].endswith("?arch=amd64&distro=debian-12")
    # The agent's crates from Brokkr's real lockfile: kube is there, the broker-only
    # crates are not (the agent does not depend on them).
    crates = {c["name"] for c in found.values() if c.get("purl", "").startswith("pkg:cargo/")}
    assert {"kube", "tokio", "serde"} <= crates
    root = found["cargo:brokkr-agent@0.0.0#local"]
    assert root["type"] == "application"
    assert "purl" not in root  # a workspace crate is not on crates.io
    # kubectl, pinned, with the sha256 the engine verified.
    kubectl = next(c for c in found.values() if c["name"] == "kubectl")
    assert kubectl["hashes"] == [{"alg": "SHA-256", "content": KUBECTL_SHA256["amd64"]}]
    # The image itself, by its platform manifest digest.
    image = doc["metadata"]["component"]
    assert image["type"] == "container"
    assert image["purl"] == (
        "pkg:oci/brokkr-agent@sha256:" + "ab" * 32 + "?arch=amd64"
        "&repository_url=ghcr.io/colliery-io/brokkr-agent"
    )
    assert {"name": "rust-audit-info", "type": "application", "version": "0.5.4"} in doc[
        "metadata"
    ]["tools"]["components"]


def test_broker_and_agent_crates_differ_as_their_lockfile_graphs_do():
    lock = fixture("Cargo.lock")
    broker, _ = _cyclonedx.rust_crates(audit_data_from_lock(lock, "brokkr-broker"), binary="b")
    agent, _ = _cyclonedx.rust_crates(audit_data_from_lock(lock, "brokkr-agent"), binary="a")
    assert "kube" in {p.name for p in agent}
    assert "kube" not in {p.name for p in broker}


def test_ui_sbom_from_a_real_npm_lockfile_is_valid_cyclonedx():
    text = _cyclonedx.render(
        _cyclonedx.build_document(UI, _cyclonedx.Subject("brokkr-ui", AMD64), ui_contents())
    )
    validate(text)
    found = components(json.loads(text))
    assert {"react", "react-dom", "axios"} <= {c["name"] for c in found.values()}
    scoped = next(c for c in found.values() if c.get("group") == "@alloc")
    assert scoped["purl"] == "pkg:npm/%40alloc/quick-lru@5.2.0"
    assert scoped["hashes"][0]["alg"] == "SHA-512"
    assert len(scoped["hashes"][0]["content"]) == 128
    assert found["node@18.20.8"]["type"] == "application"
    assert found["apk:musl@1.2.5-r9?arch=x86_64"]["purl"] == (
        "pkg:apk/alpine/musl@1.2.5-r9?arch=x86_64&distro=alpine-3.21.3"
    )


def test_every_purl_is_canonical():
    for contents, spec in ((agent_contents(), AGENT), (ui_contents(), UI)):
        doc = _cyclonedx.build_document(
            spec, _cyclonedx.Subject("x", AMD64, digest="sha256:" + "0" * 64), contents
        )
        purls = [c["purl"] for c in doc["components"] if "purl" in c]
        purls.append(doc["metadata"]["component"]["purl"])
        assert len(purls) > 50
        for text in purls:
            assert PackageURL.from_string(text).to_string() == text


def test_the_same_image_gives_the_same_sbom():
    subject = _cyclonedx.Subject("brokkr-agent", ARM64, digest="sha256:" + "1" * 64)
    first = _cyclonedx.render(_cyclonedx.build_document(AGENT, subject, agent_contents("arm64")))
    again = _cyclonedx.render(_cyclonedx.build_document(AGENT, subject, agent_contents("arm64")))
    assert first == again
    other = _cyclonedx.Subject("brokkr-agent", ARM64, digest="sha256:" + "2" * 64)
    moved = json.loads(
        _cyclonedx.render(_cyclonedx.build_document(AGENT, other, agent_contents("arm64")))
    )
    assert moved["serialNumber"] != json.loads(first)["serialNumber"]


# -- the parsers ---------------------------------------------------------------------


def test_only_installed_debian_packages_are_listed():
    status = (
        "Package: gone\nStatus: deinstall ok config-files\nArchitecture: amd64\nVersion: 1\n\n"
        "Package: tzdata\nStatus: install ok installed\nArchitecture: all\nVersion: 2025b-0\n"
        "Description: time zones\n continuation: not a field\n"
    )
    (package,) = _cyclonedx.debian_packages(status, distro="debian-12", arch="amd64")
    assert package.name == "tzdata"
    assert package.purl == "pkg:deb/debian/tzdata@2025b-0?arch=all&distro=debian-12"


def test_a_database_of_another_architecture_is_refused():
    with pytest.raises(BrokkrError, match="not read from this platform's image"):
        _cyclonedx.build_document(
            AGENT, _cyclonedx.Subject("brokkr-agent", ARM64), agent_contents("amd64")
        )
    with pytest.raises(BrokkrError, match="not read from this platform's image"):
        _cyclonedx.build_document(UI, _cyclonedx.Subject("brokkr-ui", ARM64), ui_contents("x86_64"))


def test_build_time_crates_are_not_in_the_binary():
    data = json.dumps(
        {
            "packages": [
                {"name": "app", "version": "1.0.0", "source": "local", "dependencies": [1, 2],
                 "root": True},
                {"name": "serde", "version": "1.0.200", "source": "crates.io"},
                {"name": "cc", "version": "1.1.0", "source": "crates.io", "kind": "build"},
                {"name": "forked", "version": "0.1.0", "source": "git"},
            ]
        }
    )  # fmt: skip
    packages, root = _cyclonedx.rust_crates(data, binary="app")
    by_name = {p.name: p for p in packages}
    assert set(by_name) == {"app", "serde", "forked"}
    assert root == "cargo:app@1.0.0#local"
    assert by_name["app"].depends_on == ("cargo:serde@1.0.200#crates.io",)
    assert by_name["serde"].purl == "pkg:cargo/serde@1.0.200"
    assert by_name["forked"].purl is None


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        ("not json", "not JSON"),
        ("[" * 100_000, "not JSON"),  # nested past Python's recursion limit
        ('{"packages": []}', "lists no crate"),
        ('{"packages": [{"name": "a", "version": "1.0.0", "source": "local"}]}', "0 root"),
        ('{"packages": [{"name": "a", "version": "1.0.0"}]}', "malformed crate"),
        (
            '{"packages": [{"name": "a", "version": "1.0.0", "source": "local", "root": true,'
            ' "dependencies": [7]}]}',
            "bad dependency index",
        ),
    ],
)
def test_bad_audit_data_is_an_error(data: str, problem: str):
    with pytest.raises(BrokkrError, match=problem):
        _cyclonedx.rust_crates(data, binary="brokkr-agent")


def test_an_empty_dpkg_database_is_an_error():
    with pytest.raises(BrokkrError, match="no installed package"):
        _cyclonedx.debian_packages("", distro="debian-12", arch="amd64")


# -- the graph: what the sbom function reads, and from where ----------------------------


@pytest.fixture
def image_files(engine: StandInEngine) -> dict[str, list[Node]]:
    return answer_image_reads(engine)


def returned_sbom(engine: StandInEngine, file_id: str) -> tuple[str, dict[str, Any]]:
    node = engine.node(file_id)
    assert node.field == "file"
    assert node.parent is None
    return str(node.args["name"]), json.loads(node.args["contents"])


async def test_agent_sbom_is_read_from_the_arm64_runtime_image(
    brokkr: ModuleCaller, engine: StandInEngine, image_files: dict[str, list[Node]]
):
    file_id = await brokkr.call("sbom", component="AGENT", platform="linux/arm64")
    name, doc = returned_sbom(engine, file_id)
    assert name == "brokkr-agent-arm64.cdx.json"
    validate(json.dumps(doc))
    assert doc["metadata"]["component"]["properties"] == [
        {"name": "brokkr:platform", "value": "linux/arm64"}
    ]
    # dpkg database and os-release: the arm64 runtime image (the one with the binary).
    (runtime,) = {n.key(): n for n in image_files["dpkg"]}.values()
    assert runtime.platform("?") == "linux/arm64"
    assert runtime.base_image() == "debian:bookworm-slim"
    assert [n.key() for n in image_files["os"]] == [runtime.key()]
    # The crates: the pinned rust-audit-info, on the engine's platform, reading the
    # binary copied out of that same runtime image.
    (scan,) = image_files["scan"]
    assert scan.platform("?") == "linux/amd64"
    assert scan.base_image() == "rust:1.90-slim-bookworm"
    assert ["cargo", "install", "rust-audit-info", "--locked", "--version", "0.5.4"] in scan.execs()
    assert scan.execs()[-1] == ["rust-audit-info", "/scan/brokkr-agent"]
    (mounted,) = scan.calls("withMountedFile")
    binary = mounted.args["source"]
    assert binary.field == "file"
    assert binary.args["path"] == "/usr/local/bin/brokkr-agent"
    assert binary.parent is not None
    assert binary.parent.key() == runtime.key()
    # That binary was linked by the pinned cargo-auditable.
    (copied,) = [
        n for n in runtime.calls("withFile") if n.args["path"] == "/usr/local/bin/brokkr-agent"
    ]
    builder = copied.args["source"].parent
    install = [
        "cargo",
        "install",
        "cargo-auditable",
        "--locked",
        "--version",
        CARGO_AUDITABLE_VERSION,
    ]
    assert install in builder.execs()
    triple = ["--target", "aarch64-unknown-linux-gnu"]
    assert [
        "cargo",
        "auditable",
        "build",
        "--release",
        "--bin",
        "brokkr-agent",
        *triple,
    ] in builder.execs()
    # What it found: arm64 packages, the agent's crates, arm64 kubectl.
    found = components(doc)
    assert all(
        "arch=arm64" in c["purl"] or "arch=all" in c["purl"]
        for c in found.values()
        if c.get("purl", "").startswith("pkg:deb/")
    )
    assert "cargo:kube" in " ".join(found)
    kubectl = next(c for c in found.values() if c["name"] == "kubectl")
    assert kubectl["hashes"][0]["content"] == KUBECTL_SHA256["arm64"]


async def test_ui_sbom_reads_apk_and_npm_from_the_ui_image(
    brokkr: ModuleCaller, engine: StandInEngine, image_files: dict[str, list[Node]]
):
    file_id = await brokkr.call("sbom", component="UI", platform="linux/arm64")
    name, doc = returned_sbom(engine, file_id)
    assert name == "brokkr-ui-arm64.cdx.json"
    validate(json.dumps(doc))
    (apk,) = image_files["apk"]
    (npm,) = image_files["npm"]
    assert apk.key() == npm.key()
    assert apk.platform("?") == "linux/arm64"
    assert apk.base_image() == "node:18-alpine"
    assert not image_files["dpkg"]
    assert not image_files["scan"]
    found = components(doc)
    assert "apk:musl@1.2.5-r9?arch=aarch64" in found
    assert found["node@18.20.8"]["purl"] == "pkg:generic/node@18.20.8"


async def test_a_bad_platform_is_refused_before_anything_is_read(
    brokkr: ModuleCaller, engine: StandInEngine, image_files: dict[str, list[Node]]
):
    from dagger.mod._exceptions import FunctionError

    with pytest.raises(FunctionError, match="linux/s390x"):
        await brokkr.call("sbom", component="AGENT", platform="linux/s390x")
    assert not any(image_files.values())
