"""Stand-in answers for what an SBOM reads from a built image, from real data.

Real data lives in tests/fixtures/sbom/: a Debian 12 dpkg status database (the
stanzas of bookworm's required packages and the runtime libraries with their
dependencies, verbatim from a bookworm machine) and its os-release, Brokkr's
own Cargo.lock (commit 1e69e30) and its UI's package-lock.json. The crate list
a `cargo auditable` binary carries is the lockfile's dependency graph of that
binary's package: `audit_data_from_lock` derives it in cargo-auditable's JSON
format, since no binary can be built here.
"""

from __future__ import annotations

import gzip
import json
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ci.rules.platforms import parse_platform
from ci.supply_chain import sbom as _sbom
from tests.support.standin import Node, StandInEngine

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sbom"
CRATES_IO = "registry+https://github.com/rust-lang/crates.io-index"

APK_INSTALLED = """\
C:Q1abc=
P:musl
V:1.2.5-r9
A:{arch}
L:MIT
o:musl

C:Q1def=
P:busybox
V:1.37.0-r12
A:{arch}
L:GPL-2.0-only
o:busybox

C:Q1ghi=
P:alpine-baselayout-data
V:3.6.8-r1
A:{arch}
L:GPL-2.0-only
"""
ALPINE_RELEASE = 'NAME="Alpine Linux"\nID=alpine\nVERSION_ID=3.21.3\n'


def fixture(name: str) -> str:
    """A file of tests/fixtures/sbom (decompressed when it is .gz)."""
    path = FIXTURES / name
    if path.suffix == ".gz":
        return gzip.decompress(path.read_bytes()).decode()
    return path.read_text()


def dpkg_status(arch: str = "amd64") -> str:
    """The real status database, as the `arch` image would hold it."""
    return fixture("dpkg-status").replace("Architecture: amd64", f"Architecture: {arch}")


def audit_data_from_lock(lock_text: str, root: str) -> str:
    """cargo-auditable's JSON for the package `root`: its dependency graph in the lockfile.

    Packages sorted by name and version, dependencies as indexes, the root
    marked, sources as cargo-auditable writes them (crates.io, local, git,
    registry).
    """
    packages = tomllib.loads(lock_text)["package"]

    def resolve(spec: str) -> dict[str, Any]:
        name, *rest = spec.split(" ")
        found = [p for p in packages if p["name"] == name]
        if rest:
            found = [p for p in found if p["version"] == rest[0]]
        assert len(found) == 1, spec
        return found[0]

    def key(package: dict[str, Any]) -> tuple[str, str]:
        return package["name"], package["version"]

    reached: dict[tuple[str, str], dict[str, Any]] = {}
    stack = [resolve(root)]
    while stack:
        package = stack.pop()
        if key(package) in reached:
            continue
        reached[key(package)] = package
        stack.extend(resolve(d) for d in package.get("dependencies", []))
    order = sorted(reached)
    index = {k: i for i, k in enumerate(order)}

    def source(package: dict[str, Any]) -> str:
        text = package.get("source", "")
        if text == CRATES_IO:
            return "crates.io"
        if not text:
            return "local"
        return "git" if text.startswith("git+") else "registry"

    entries = []
    for k in order:
        package = reached[k]
        entry: dict[str, Any] = {"name": k[0], "version": k[1], "source": source(package)}
        deps = sorted({index[key(resolve(d))] for d in package.get("dependencies", [])})
        if deps:
            entry["dependencies"] = deps
        if k[0] == root:
            entry["root"] = True
        entries.append(entry)
    return json.dumps({"packages": entries, "format": 1})


def answer_image_reads(engine: StandInEngine) -> dict[str, list[Node]]:
    """Answer the SBOM's reads like real images would, recording which container was read."""
    reads: dict[str, list[Node]] = {"dpkg": [], "os": [], "scan": [], "apk": [], "npm": []}
    engine.container_files["/app/recipe.json"] = '{"skeleton": "fixture"}'
    lock = fixture("Cargo.lock")

    def arch_of(node: Node) -> str:
        return parse_platform(node.platform(engine.default_platform)).debian_arch

    def answer(kind: str, make: Callable[[Node], str]) -> Callable[[Node], str]:
        def read(node: Node) -> str:
            reads[kind].append(node)
            return make(node)

        return read

    engine.container_files[_sbom.DPKG_STATUS] = answer("dpkg", lambda n: dpkg_status(arch_of(n)))
    engine.container_files[_sbom.OS_RELEASE] = answer(
        "os",
        lambda n: ALPINE_RELEASE if n.base_image() == "node:18-alpine" else fixture("os-release"),
    )
    engine.container_files[_sbom.APK_INSTALLED] = answer(
        "apk",
        lambda n: APK_INSTALLED.format(
            arch=parse_platform(n.platform("?")).multiarch.split("-")[0]
        ),
    )
    engine.container_files[_sbom.NPM_INSTALLED] = answer(
        "npm", lambda _n: fixture("package-lock.json.gz")
    )

    def stdout(_engine: StandInEngine, node: Node | None, _args: dict[str, Any]) -> str:
        assert node is not None
        last = node.execs()[-1]
        if last[0] != "rust-audit-info":
            return ""  # another exec (the image's start check)
        reads["scan"].append(node)
        binary = last[-1].rsplit("/", 1)[-1]
        return audit_data_from_lock(lock, binary)

    engine.on("Container", "stdout", stdout)
    engine.on("Container", "exists", lambda _e, _n, args: args["path"] == _sbom.NPM_INSTALLED)
    engine.on(
        "Container",
        "envVariable",
        lambda _e, _n, args: "18.20.8" if args["name"] == "NODE_VERSION" else "",
    )
    return reads
