"""The CycloneDX 1.5 document of one image and platform, from syft's scan of that image.

`ci.supply_chain.sbom` runs the pinned syft in the engine over the image's root
filesystem (`syft_arguments`); this module, without Dagger, turns syft's
CycloneDX JSON into the SBOM the module publishes (`build_document`, `render`):

- `metadata.component` is the image (`pkg:oci/<name>@<platform manifest digest>`
  once pushed), not syft's description of a scanned folder; `metadata.tools`
  names syft (with its version, from its own output) and brokkr-ci; no
  wall-clock timestamp;
- every `bom-ref` is derived from the component itself (its purl, else type,
  name and version), not syft's run-specific package ids, and the
  dependencies are rewritten to match; components, licenses and dependencies
  are sorted; the image depends on every component nothing else depends on;
- licenses are valid by CycloneDX's rules (`license_choices`): an SPDX
  identifier stays an `id`, a valid SPDX expression an `expression` (alone, as
  CycloneDX requires), and anything else (`BSD`, `custom`, `Apache 2.0`,
  Debian's `Expat`) a `name`;
- the serial number is a UUID5 of the document's content, so the same image
  gives the same SBOM and attaching it again pushes nothing new.

It also checks that the scan covered what the image holds (`check_coverage`),
so an SBOM fails instead of silently shrinking: the OS package database, the
crates cargo-auditable embedded in the Rust binary, kubectl's Go build data,
and the UI app's npm packages (whose record, `/app/node_modules/.package-lock.json`,
must exist); and that every OS package is of the platform's architecture.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import groupby
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote

from ci.errors import BrokkrError
from ci.rules.components import ComponentSpec
from ci.rules.platforms import PlatformSpec

SPEC_VERSION = "1.5"
MEDIA_TYPE = "application/vnd.cyclonedx+json"
"""The media type of the SBOM (also the `artifactType` of its OCI referrer)."""

NPM_INSTALLED = "/app/node_modules/.package-lock.json"
"""npm's record of the UI app's installed tree: its absence fails the UI's SBOM."""
APP_MODULES = "/app/node_modules/"
KUBECTL_PATH = "/usr/local/bin/kubectl"

SCAN_ROOT = "/scan/rootfs"
"""Where the scanned image's root filesystem is mounted in the syft container."""
SYFT_ENV: Mapping[str, str] = {"SYFT_CHECK_FOR_APP_UPDATE": "false"}
"""syft must not reach the network (it would ask anchore.io for a newer version)."""

MAX_SYFT_OUTPUT_BYTES = 64 * 1024 * 1024
"""A larger scan result is refused (the UI image's is a few MB)."""

_SBOM_NAMESPACE = uuid.UUID("5f0c1a52-7e0b-4c1f-9d5e-0b5b3c6a9e11")
"""The uuid5 namespace of serial numbers (a serial number is a function of the content)."""


def syft_arguments(root: str = SCAN_ROOT) -> list[str]:
    """syft's arguments (after the binary) to scan the root filesystem mounted at `root`.

    A directory scan with `--base-path` (absolute symlinks resolve inside the
    image, paths are reported as the image has them) and the *image* set of
    catalogers (installed-package databases and binaries, as `syft <image>`
    uses; not the lockfile catalogers a source tree gets): CycloneDX 1.5 JSON
    on stdout.
    """
    return [
        "scan",
        f"dir:{root}",
        "--base-path",
        root,
        "--override-default-catalogers",
        "image",
        "--output",
        f"cyclonedx-json@{SPEC_VERSION}",
        "--quiet",
    ]


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


@dataclass(frozen=True)
class ImageContents:
    """What was read from one runtime image: syft's output and the npm record's presence."""

    syft_json: str
    npm_record: bool | None = None
    """For the UI: whether `NPM_INSTALLED` exists in the image (None: not asked)."""


# -- purls -------------------------------------------------------------------------


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


def purl_type(text: str) -> str:
    """The type of a purl (`deb`, `apk`, `npm`…); "" when `text` is not one."""
    if not text.startswith("pkg:"):
        return ""
    return text[4:].lstrip("/").split("/", 1)[0].lower()


def purl_qualifiers(text: str) -> dict[str, str]:
    """The qualifiers of a purl, decoded."""
    _, _, query = text.partition("?")
    return dict(parse_qsl(query.partition("#")[0]))


# -- licenses ----------------------------------------------------------------------

_SPDX_FILE = Path(__file__).with_name("spdx-ids.txt")


@cache
def spdx_ids() -> frozenset[str]:
    """SPDX license and exception ids, as CycloneDX 1.5's schema enumerates them."""
    lines = _SPDX_FILE.read_text().splitlines()
    return frozenset(line for line in lines if line and not line.startswith("#"))


def _spdx_id(token: str) -> bool:
    if re.fullmatch(r"(DocumentRef-[A-Za-z0-9.\-]+:)?LicenseRef-[A-Za-z0-9.\-]+", token):
        return True
    return token.removesuffix("+") in spdx_ids()


def spdx_expression_valid(text: str) -> bool:
    """Whether `text` is an SPDX license expression of known identifiers.

    Grammar: `expr := term ((AND|OR) term)*`, `term := "(" expr ")" | id ["+"] [WITH id]`;
    operators in upper or lower case; ids from the SPDX list or `LicenseRef-…`.
    """
    tokens = re.findall(r"\(|\)|[^\s()]+", text)
    if not tokens or len(text) > 1000:
        return False
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def term() -> bool:
        nonlocal position
        word = peek()
        if word == "(":
            position += 1
            if not expression() or peek() != ")":
                return False
            position += 1
            return True
        if word is None or word.upper() in ("AND", "OR", "WITH", ")") or not _spdx_id(word):
            return False
        position += 1
        if (peek() or "").upper() == "WITH":
            position += 1
            exception = peek()
            if exception is None or exception not in spdx_ids():
                return False
            position += 1
        return True

    def expression() -> bool:
        nonlocal position
        if not term():
            return False
        while (peek() or "").upper() in ("AND", "OR"):
            position += 1
            if not term():
                return False
        return True

    return expression() and position == len(tokens)


def license_choices(entries: Iterable[Any]) -> list[dict[str, Any]]:
    """A component's `licenses`, valid by CycloneDX's rules and sorted.

    An SPDX id stays (or becomes) `license.id`; a valid SPDX expression
    `expression`; any other text `license.name` (never an invalid id or
    expression). CycloneDX allows one expression alone: with several entries,
    an expression is kept as a name. Duplicates are dropped.
    """
    ids: set[str] = set()
    names: set[str] = set()
    expressions: set[str] = set()
    for entry in entries:
        if not isinstance(entry, Mapping):
            continue
        if isinstance(entry.get("expression"), str):
            text = entry["expression"].strip()
        else:
            license_ = entry.get("license")
            if not isinstance(license_, Mapping):
                continue
            text = str(license_.get("id") or license_.get("name") or "").strip()
        if not text:
            continue
        if text in spdx_ids():
            ids.add(text)
        elif spdx_expression_valid(text):
            expressions.add(text)
        else:
            names.add(text)
    if len(expressions) == 1 and not ids and not names:
        return [{"expression": expressions.pop()}]
    names |= expressions
    return [{"license": {"id": i}} for i in sorted(ids)] + [
        {"license": {"name": n}} for n in sorted(names)
    ]


# -- the document --------------------------------------------------------------------


def parse_syft(text: str) -> dict[str, Any]:
    """syft's CycloneDX JSON, checked enough to be post-processed."""
    if len(text) > MAX_SYFT_OUTPUT_BYTES:
        raise BrokkrError(f"syft's output is larger than {MAX_SYFT_OUTPUT_BYTES} bytes")
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        raise BrokkrError("syft's output is not JSON") from None
    if not isinstance(document, dict) or document.get("bomFormat") != "CycloneDX":
        raise BrokkrError("syft's output is not a CycloneDX document")
    components = document.get("components", [])
    if not isinstance(components, list) or not all(isinstance(c, dict) for c in components):
        raise BrokkrError("syft's output has a malformed component list")
    return document


_LOCATION_PATH = re.compile(r"syft:location:\d+:path")


def _location_paths(component: Mapping[str, Any]) -> list[str]:
    """The `syft:location:N:path` properties: where syft found the component."""
    return [
        str(p.get("value"))
        for p in component.get("properties", [])
        if isinstance(p, Mapping) and _LOCATION_PATH.fullmatch(str(p.get("name", "")))
    ]


def _natural_ref(component: Mapping[str, Any]) -> str:
    if isinstance(component.get("purl"), str) and component["purl"]:
        return str(component["purl"])
    return f"{component.get('type', 'library')}:{component.get('name', '')}@" + str(
        component.get("version", "")
    )


def _sort_key(component: Mapping[str, Any]) -> tuple[str, str]:
    return (str(component.get("type", "")), _natural_ref(component))


def _sorted_components(components: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """By type and natural reference, then, among equals, by their whole JSON: the order
    does not depend on syft's (the JSON is dumped only where it decides)."""
    out: list[Mapping[str, Any]] = []
    for _, same in groupby(sorted(components, key=_sort_key), key=_sort_key):
        group = list(same)
        if len(group) > 1:
            group.sort(key=lambda c: json.dumps(c, sort_keys=True))
        out.extend(group)
    return out


def _clean_component(component: Mapping[str, Any], ref: str) -> dict[str, Any]:
    out = {k: v for k, v in component.items() if k not in ("bom-ref", "licenses")}
    out = {"bom-ref": ref, **out}
    licenses = license_choices(component.get("licenses") or [])
    if licenses:
        out["licenses"] = licenses
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


def _tools(syft_doc: Mapping[str, Any]) -> list[dict[str, Any]]:
    found = []
    tools = syft_doc.get("metadata", {}).get("tools", {})
    for tool in tools.get("components", []) if isinstance(tools, Mapping) else []:
        if isinstance(tool, Mapping) and isinstance(tool.get("name"), str):
            found.append({k: tool[k] for k in ("type", "author", "name", "version") if k in tool})
    return sorted([{"type": "application", "name": "brokkr-ci"}, *found], key=lambda t: t["name"])


def document(subject: Subject, syft_doc: Mapping[str, Any]) -> dict[str, Any]:
    """The published CycloneDX 1.5 document made of syft's `syft_doc` (see the module doc)."""
    components = _sorted_components(syft_doc.get("components", []))
    refs: dict[str, str] = {}
    used: set[str] = set()
    cleaned = []
    for component in components:
        natural = _natural_ref(component)
        ref, n = natural, 1
        while ref in used or ref == "image":
            n += 1
            ref = f"{natural}#{n}"
        used.add(ref)
        if isinstance(component.get("bom-ref"), str):
            refs[component["bom-ref"]] = ref
        cleaned.append(_clean_component(component, ref))
    depends: dict[str, set[str]] = {}
    for entry in syft_doc.get("dependencies", []) or []:
        if not isinstance(entry, Mapping) or entry.get("ref") not in refs:
            continue
        targets = {refs[d] for d in entry.get("dependsOn", []) or [] if d in refs}
        depends.setdefault(refs[entry["ref"]], set()).update(targets)
    depended = set().union(*depends.values()) if depends else set()
    dependencies = [{"ref": "image", "dependsOn": sorted(used - depended)}]
    dependencies += [
        {"ref": ref, "dependsOn": sorted(targets)}
        for ref, targets in sorted(depends.items())
        if targets
    ]
    body: dict[str, Any] = {
        "metadata": {
            "tools": {"components": _tools(syft_doc)},
            "component": image_component(subject),
        },
        "components": cleaned,
        "dependencies": dependencies,
    }
    return _with_serial(body)


def _with_serial(body: Mapping[str, Any]) -> dict[str, Any]:
    # The serial number is a function of the content: the same image, the same SBOM.
    serial = uuid.uuid5(_SBOM_NAMESPACE, json.dumps(body, sort_keys=True))
    return {
        "$schema": "http://cyclonedx.org/schema/bom-1.5.schema.json",
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{serial}",
        "version": 1,
        **body,
    }


_HEADER = ("$schema", "bomFormat", "specVersion", "serialNumber", "version")


def with_subject(doc: Mapping[str, Any], subject: Subject) -> dict[str, Any]:
    """`doc` (a `document`) about `subject` instead: its image component and serial number
    change, nothing else (what `document(subject, …)` of the same scan returns)."""
    body = {k: v for k, v in doc.items() if k not in _HEADER}
    body["metadata"] = {**doc["metadata"], "component": image_component(subject)}
    return _with_serial(body)


def render(doc: Mapping[str, Any]) -> str:
    """The document as compact JSON text (stable key order, trailing newline).

    Compact: the C encoder writes it (an indented dump takes Python's own,
    several times slower on an SBOM of a thousand components) and it is smaller
    in the registry; `jq .` shows it indented.
    """
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":")) + "\n"


# -- coverage --------------------------------------------------------------------------


def _found_in(components: Sequence[Mapping[str, Any]], kind: str, prefix: str) -> list[str]:
    return [
        str(c.get("name"))
        for c in components
        if purl_type(str(c.get("purl", ""))) == kind
        and any(path.startswith(prefix) for path in _location_paths(c))
    ]


def check_coverage(
    spec: ComponentSpec, platform: PlatformSpec, contents: ImageContents, doc: Mapping[str, Any]
) -> None:
    """Refuse an SBOM that missed what `spec`'s image holds, or that is another platform's.

    Broker and agent: Debian packages, the binary's cargo-auditable crates, and
    (agent) kubectl's Go module and standard library. UI: Alpine packages and
    the app's npm packages, whose record must exist. Every OS package must be
    of `platform`'s architecture (or architecture-independent).
    """
    components: list[Mapping[str, Any]] = doc.get("components", [])
    os_kind, any_arch = ("deb", "all") if spec.rust else ("apk", "noarch")
    arch = platform.debian_arch if spec.rust else platform.multiarch.split("-", 1)[0]
    packages = [c for c in components if purl_type(str(c.get("purl", ""))) == os_kind]
    if not packages:
        database = "dpkg" if spec.rust else "apk"
        raise BrokkrError(f"syft found no {database} package in the {spec.name} image")
    for package in packages:
        package_arch = purl_qualifiers(str(package["purl"])).get("arch", "")
        if package_arch not in (arch, any_arch):
            raise BrokkrError(
                f"the {os_kind} database lists {package.get('name')} for {package_arch}, but the "
                f"SBOM is for {arch}: it was not read from this platform's image"
            )
    missing = []
    if spec.rust and not _found_in(components, "cargo", f"/usr/local/bin/{spec.binary}"):
        missing.append(f"the crates cargo-auditable embedded in /usr/local/bin/{spec.binary}")
    if spec.kubectl and "stdlib" not in _found_in(components, "golang", KUBECTL_PATH):
        missing.append(f"the Go module and standard library of {KUBECTL_PATH}")
    if not spec.rust:
        if contents.npm_record is False:
            raise BrokkrError(
                f"the {spec.name} image has no {NPM_INSTALLED} (npm's record of the app's "
                "installed packages): its SBOM would miss the app's npm packages"
            )
        if not _found_in(components, "npm", APP_MODULES):
            missing.append(f"the app's npm packages in {APP_MODULES}")
    if missing:
        raise BrokkrError(f"syft's scan of the {spec.name} image missed " + "; ".join(missing))


def build_document(
    spec: ComponentSpec, subject: Subject, contents: ImageContents
) -> dict[str, Any]:
    """Turn syft's scan of `spec`'s image into its checked CycloneDX document."""
    doc = document(subject, parse_syft(contents.syft_json))
    check_coverage(spec, subject.platform, contents, doc)
    return doc
