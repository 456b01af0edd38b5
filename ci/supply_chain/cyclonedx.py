"""The CycloneDX 1.5 document of one image and platform, from what was read out of it.

`_sbom` reads the inputs from the built image through the engine (an
`ImageContents`; which places, and why, in its docstring); this module turns
them into the document without Dagger: the packages of each input with their
purls (`debian_packages`, `alpine_packages`, `rust_crates`, `npm_packages`,
`kubectl_package`, `node_package`), then `build_document` and `render`.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

from ci.errors import BrokkrError
from ci.rules.components import ComponentSpec
from ci.rules.platforms import PlatformSpec
from ci.rules.versions import KUBECTL_SHA256, KUBECTL_VERSION, kubectl_url

SPEC_VERSION = "1.5"
MEDIA_TYPE = "application/vnd.cyclonedx+json"
"""The media type of the SBOM (also the `artifactType` of its OCI referrer)."""

DPKG_STATUS = "/var/lib/dpkg/status"
APK_INSTALLED = "/lib/apk/db/installed"
OS_RELEASE = "/etc/os-release"
NPM_INSTALLED = "/app/node_modules/.package-lock.json"

MAX_INPUT_BYTES = 64 * 1024 * 1024
"""Larger inputs (a dpkg database, the audit data, a lockfile) are refused."""

_SBOM_NAMESPACE = uuid.UUID("5f0c1a52-7e0b-4c1f-9d5e-0b5b3c6a9e11")
"""The uuid5 namespace of serial numbers (a serial number is a function of the content)."""


# -- what an image contains ----------------------------------------------------------


@dataclass(frozen=True)
class Package:
    """One piece of software in the image, ready to become a CycloneDX component."""

    bom_ref: str
    name: str
    version: str
    purl: str | None
    type: str = "library"
    group: str | None = None
    licenses: str | None = None
    hashes: tuple[tuple[str, str], ...] = ()
    properties: tuple[tuple[str, str], ...] = ()
    depends_on: tuple[str, ...] = ()


@dataclass(frozen=True)
class Subject:
    """The image the SBOM describes: `metadata.component`."""

    name: str
    """The image name: `ghcr.io/colliery-io/brokkr-agent`, or `brokkr-agent` when unpublished."""
    platform: PlatformSpec
    version: str | None = None
    """The tag or version, when known."""
    digest: str | None = None
    """The platform manifest's digest, once pushed."""


@dataclass
class ImageContents:
    """The raw inputs read from one runtime image."""

    os_release: str
    dpkg_status: str | None = None
    apk_installed: str | None = None
    audit_data: str | None = None
    npm_installed: str | None = None
    node_version: str | None = None
    kubectl: bool = False
    tools: list[tuple[str, str]] = field(default_factory=list)


# -- purls ------------------------------------------------------------------------


def purl(
    kind: str,
    name: str,
    version: str | None = None,
    *,
    namespace: str | None = None,
    qualifiers: Mapping[str, str] | None = None,
) -> str:
    """A package URL in canonical form (as packageurl-python writes it)."""
    text = f"pkg:{kind}/"
    if namespace:
        text += "/".join(quote(part, safe=":") for part in namespace.split("/")) + "/"
    text += quote(name, safe=":")
    if version:
        text += "@" + quote(version, safe=":")
    pairs = sorted((k, v) for k, v in (qualifiers or {}).items() if v)
    if pairs:
        text += "?" + "&".join(f"{k}={quote(v, safe=':/')}" for k, v in pairs)
    return text


# -- parsers (pure) ------------------------------------------------------------------


def _check_size(text: str, what: str) -> None:
    if len(text) > MAX_INPUT_BYTES:
        raise BrokkrError(f"{what} is larger than {MAX_INPUT_BYTES} bytes; refusing it")


def parse_os_release(text: str) -> dict[str, str]:
    """`/etc/os-release` as a mapping (`ID`, `VERSION_ID`, …), quotes removed."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        key, sep, value = line.strip().partition("=")
        if not sep or key.startswith("#"):
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        out[key] = value
    return out


def _stanzas(text: str) -> Iterable[dict[str, str]]:
    """RFC 822-style paragraphs (dpkg status): field → value, continuation lines dropped."""
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            if not line or line[0] in " \t":
                continue  # continuation lines (descriptions, conffiles)
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if fields:
            yield fields


def debian_packages(status: str, *, distro: str, arch: str) -> list[Package]:
    """The installed packages of a dpkg status database.

    `distro` is the purl's `distro` qualifier (e.g. `debian-12`); `arch` the
    Debian architecture of the platform. A package of another architecture
    (other than `all`) is an error: the database is not the platform's.
    """
    _check_size(status, DPKG_STATUS)
    packages = []
    for fields in _stanzas(status):
        name, version = fields.get("Package"), fields.get("Version")
        if not name or not version:
            continue
        if not fields.get("Status", "").endswith(" installed"):
            continue
        package_arch = _check_arch("dpkg", name, fields.get("Architecture", ""), "all", arch)
        properties: list[tuple[str, str]] = []
        if source := fields.get("Source"):
            properties.append(("debian:source", source.split(" ", 1)[0]))
        packages.append(
            Package(
                bom_ref=f"deb:{name}@{version}?arch={package_arch}",
                name=name,
                version=version,
                purl=purl(
                    "deb",
                    name,
                    version,
                    namespace="debian",
                    qualifiers={"arch": package_arch, "distro": distro},
                ),
                properties=tuple(properties),
            )
        )
    if not packages:
        raise BrokkrError(f"{DPKG_STATUS} of the image lists no installed package")
    return packages


def _check_arch(database: str, name: str, package_arch: str, any_arch: str, arch: str) -> str:
    """`package_arch` if it is `arch` or `any_arch`; otherwise the image is the wrong one."""
    if package_arch not in (any_arch, arch):
        raise BrokkrError(
            f"the {database} database lists {name} for {package_arch}, but the SBOM is for "
            f"{arch}: it was not read from this platform's image"
        )
    return package_arch


def alpine_packages(installed: str, *, distro: str, arch: str) -> list[Package]:
    """The packages of an apk database (`P:` name, `V:` version, `A:` arch, `L:` license)."""
    _check_size(installed, APK_INSTALLED)
    packages = []
    for block in re.split(r"\n\s*\n", installed):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep and len(key) == 1 and key not in fields:
                fields[key] = value
        name, version = fields.get("P"), fields.get("V")
        if not name or not version:
            continue
        package_arch = _check_arch("apk", name, fields.get("A", ""), "noarch", arch)
        packages.append(
            Package(
                bom_ref=f"apk:{name}@{version}?arch={package_arch}",
                name=name,
                version=version,
                purl=purl(
                    "apk",
                    name,
                    version,
                    namespace="alpine",
                    qualifiers={"arch": package_arch, "distro": distro},
                ),
                licenses=fields.get("L") or None,
            )
        )
    if not packages:
        raise BrokkrError(f"{APK_INSTALLED} of the image lists no package")
    return packages


def rust_crates(audit_json: str, *, binary: str) -> tuple[list[Package], str]:
    """The runtime crates of `cargo auditable`'s audit data, and the root crate's bom-ref.

    The data is `{"packages": [{name, version, source, kind?, dependencies?, root?}]}`
    with dependencies as indexes. Build-time crates (`kind: build`: build
    scripts, proc macros) are not in the binary and are left out; crates.io
    crates get `pkg:cargo` purls, workspace (`local`), git and other-registry
    crates none (crates.io does not serve them).
    """
    _check_size(audit_json, f"the audit data of {binary}")
    try:
        document = json.loads(audit_json)
    except (ValueError, RecursionError):
        raise BrokkrError(f"the audit data of {binary} is not JSON") from None
    entries = document.get("packages") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise BrokkrError(f"the audit data of {binary} lists no crate")
    refs: list[str] = []
    for entry in entries:
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(k), str) and entry.get(k) for k in ("name", "version", "source")
        ):
            raise BrokkrError(f"the audit data of {binary} has a malformed crate entry")
        refs.append(f"cargo:{entry['name']}@{entry['version']}#{entry['source']}")
    roots = [i for i, e in enumerate(entries) if e.get("root") is True]
    if len(roots) != 1:
        raise BrokkrError(f"the audit data of {binary} names {len(roots)} root crates, not 1")
    packages = []
    for entry, ref in zip(entries, refs, strict=True):
        if entry.get("kind", "runtime") != "runtime":
            continue
        deps = entry.get("dependencies", [])
        if not isinstance(deps, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and 0 <= d < len(entries) for d in deps
        ):
            raise BrokkrError(f"the audit data of {binary} has a bad dependency index")
        source = entry["source"]
        packages.append(
            Package(
                bom_ref=ref,
                name=entry["name"],
                version=entry["version"],
                purl=purl("cargo", entry["name"], entry["version"])
                if source == "crates.io"
                else None,
                type="application" if entry.get("root") is True else "library",
                properties=(("cargo:source", source),),
                depends_on=tuple(
                    sorted(
                        {refs[d] for d in deps if entries[d].get("kind", "runtime") == "runtime"}
                    )
                ),
            )
        )
    return packages, refs[roots[0]]


def _sri_hashes(integrity: str) -> tuple[tuple[str, str], ...]:
    """npm's `integrity` (Subresource Integrity) as CycloneDX hashes (hex)."""
    names = {"sha512": "SHA-512", "sha384": "SHA-384", "sha256": "SHA-256", "sha1": "SHA-1"}
    out = []
    for item in integrity.split():
        algorithm, _, value = item.partition("-")
        if algorithm in names:
            try:
                out.append((names[algorithm], base64.b64decode(value, validate=True).hex()))
            except ValueError:
                continue
    return tuple(out)


def npm_packages(lock_text: str) -> list[Package]:
    """The installed packages of npm's `node_modules/.package-lock.json` (v2/v3 layout)."""
    _check_size(lock_text, NPM_INSTALLED)
    try:
        document = json.loads(lock_text)
    except (ValueError, RecursionError):
        raise BrokkrError(f"{NPM_INSTALLED} of the image is not JSON") from None
    entries = document.get("packages") if isinstance(document, dict) else None
    if not isinstance(entries, dict):
        raise BrokkrError(f"{NPM_INSTALLED} of the image has no `packages` (lockfile v2 or v3)")
    packages: dict[str, Package] = {}
    for path, entry in entries.items():
        if not path or "node_modules/" not in path or not isinstance(entry, dict):
            continue  # "" is the app itself
        if entry.get("link") is True:
            continue  # a symlink to a workspace folder; its target is listed itself
        full_name = entry.get("name") or path.rsplit("node_modules/", 1)[1]
        version = entry.get("version")
        if not isinstance(full_name, str) or not isinstance(version, str) or not version:
            continue
        scope, _, name = full_name.rpartition("/")
        ref = f"npm:{full_name}@{version}"
        license_text = entry.get("license")
        properties = [("npm:path", path)]
        if entry.get("dev") is True:
            properties.append(("npm:dev", "true"))
        package = Package(
            bom_ref=ref,
            name=name,
            group=scope or None,
            version=version,
            purl=purl("npm", name, version, namespace=scope or None),
            licenses=license_text if isinstance(license_text, str) and license_text else None,
            hashes=_sri_hashes(str(entry.get("integrity") or "")),
            properties=tuple(properties),
        )
        if ref in packages:  # the same version installed at several paths
            paths = dict(packages[ref].properties)["npm:path"] + " " + path
            package = dataclasses.replace(
                packages[ref], properties=(("npm:path", paths), *properties[1:])
            )
        packages[ref] = package
    return list(packages.values())


def kubectl_package(kubectl_arch: str) -> Package:
    """kubectl as shipped in the agent: pinned version, verified sha256, download URL."""
    url = kubectl_url(kubectl_arch)
    return Package(
        bom_ref=f"kubectl@{KUBECTL_VERSION}",
        name="kubectl",
        version=KUBECTL_VERSION,
        purl=purl("generic", "kubectl", KUBECTL_VERSION, qualifiers={"download_url": url}),
        type="application",
        licenses="Apache-2.0",
        hashes=(("SHA-256", KUBECTL_SHA256[kubectl_arch]),),
        properties=(("brokkr:path", "/usr/local/bin/kubectl"),),
    )


def node_package(version: str) -> Package:
    """The Node.js runtime of the UI's base image (`NODE_VERSION`)."""
    return Package(
        bom_ref=f"node@{version}",
        name="node",
        version=version,
        purl=purl("generic", "node", version),
        type="application",
        licenses="MIT",
    )


def os_package(release: Mapping[str, str]) -> Package | None:
    """The operating system of the image, from `/etc/os-release`."""
    os_id, version = release.get("ID"), release.get("VERSION_ID")
    if not os_id or not version:
        return None
    return Package(
        bom_ref=f"os:{os_id}@{version}",
        name=os_id,
        version=version,
        purl=None,
        type="operating-system",
    )


def distro_qualifier(release: Mapping[str, str]) -> str:
    """The purl `distro` qualifier: `debian-12`, `alpine-3.21.3`."""
    os_id, version = release.get("ID"), release.get("VERSION_ID")
    if not os_id or not version:
        raise BrokkrError(f"{OS_RELEASE} of the image names no ID and VERSION_ID")
    return f"{os_id}-{version}"


# -- the document ------------------------------------------------------------------


def _license_choice(text: str) -> list[dict[str, Any]]:
    if re.fullmatch(r"[A-Za-z0-9.+\-() ]+", text) and not text.startswith("SEE "):
        return [{"expression": text.strip()}]
    return [{"license": {"name": text}}]


def _component(package: Package) -> dict[str, Any]:
    out: dict[str, Any] = {"type": package.type, "bom-ref": package.bom_ref}
    if package.group:
        out["group"] = package.group
    out["name"] = package.name
    out["version"] = package.version
    if package.hashes:
        out["hashes"] = [{"alg": alg, "content": value} for alg, value in package.hashes]
    if package.licenses:
        out["licenses"] = _license_choice(package.licenses)
    if package.purl:
        out["purl"] = package.purl
    if package.properties:
        out["properties"] = [{"name": k, "value": v} for k, v in package.properties]
    return out


def image_component(subject: Subject) -> dict[str, Any]:
    """`metadata.component`: the image, with a `pkg:oci` purl once its digest is known."""
    out: dict[str, Any] = {"type": "container", "bom-ref": "image", "name": subject.name}
    if subject.version:
        out["version"] = subject.version
    if subject.digest:
        short = subject.name.rsplit("/", 1)[-1]
        qualifiers = {"arch": subject.platform.debian_arch}
        if "/" in subject.name:
            qualifiers["repository_url"] = subject.name
        out["purl"] = purl("oci", short, subject.digest, qualifiers=qualifiers)
    out["properties"] = [{"name": "brokkr:platform", "value": subject.platform.platform}]
    return out


def document(
    subject: Subject,
    packages: Sequence[Package],
    *,
    top_level: Sequence[str],
    tools: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """The CycloneDX 1.5 document; `top_level` are the bom-refs the image depends on."""
    unique: dict[str, Package] = {}
    for package in packages:
        unique.setdefault(package.bom_ref, package)
    ordered = sorted(unique.values(), key=lambda p: (p.type, p.bom_ref))
    known = set(unique)
    dependencies = [{"ref": "image", "dependsOn": sorted(r for r in top_level if r in known)}]
    dependencies += [
        {"ref": p.bom_ref, "dependsOn": [d for d in p.depends_on if d in known]}
        for p in ordered
        if p.depends_on
    ]
    body: dict[str, Any] = {
        "metadata": {
            "tools": {
                "components": [
                    {"type": "application", "name": "brokkr-ci"},
                    *({"type": "application", "name": n, "version": v} for n, v in sorted(tools)),
                ]
            },
            "component": image_component(subject),
        },
        "components": [_component(p) for p in ordered],
        "dependencies": dependencies,
    }
    # The serial number is a function of the content: the same image, the same SBOM.
    serial = uuid.uuid5(_SBOM_NAMESPACE, json.dumps(body, sort_keys=True))
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{serial}",
        "version": 1,
        **body,
    }


def render(doc: Mapping[str, Any]) -> str:
    """The document as JSON text (stable key order, trailing newline)."""
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def build_document(
    spec: ComponentSpec, subject: Subject, contents: ImageContents
) -> dict[str, Any]:
    """Turn what was read from an image into its CycloneDX document."""
    release = parse_os_release(contents.os_release)
    distro = distro_qualifier(release)
    target = subject.platform
    packages: list[Package] = []
    top_level: list[str] = []
    if (system := os_package(release)) is not None:
        packages.append(system)
        top_level.append(system.bom_ref)
    if contents.dpkg_status is not None:
        debs = debian_packages(contents.dpkg_status, distro=distro, arch=target.debian_arch)
        packages += debs
        top_level += [p.bom_ref for p in debs]
    if contents.apk_installed is not None:
        apk_arch = target.multiarch.split("-", 1)[0]
        apks = alpine_packages(contents.apk_installed, distro=distro, arch=apk_arch)
        packages += apks
        top_level += [p.bom_ref for p in apks]
    if contents.audit_data is not None:
        crates, root = rust_crates(contents.audit_data, binary=spec.binary)
        packages += crates
        top_level.append(root)
    if contents.kubectl:
        kubectl = kubectl_package(target.kubectl_arch)
        packages.append(kubectl)
        top_level.append(kubectl.bom_ref)
    if contents.node_version:
        node = node_package(contents.node_version)
        packages.append(node)
        top_level.append(node.bom_ref)
    if contents.npm_installed is not None:
        npm = npm_packages(contents.npm_installed)
        packages += npm
        top_level += [p.bom_ref for p in npm]
    return document(subject, packages, top_level=top_level, tools=contents.tools)
