"""What `publish` prints and says: the dry run's lines, the pushed tags as text lines
with `#` notes or one JSON array, and the sentences of an error after a push."""

from __future__ import annotations

import json
from collections.abc import Sequence

from ci.publishing.plan import Target, provenance
from ci.publishing.request import OutputFormat, PublishRequest
from ci.supply_chain import sbom as _sbom

NOT_ATTACHED = f"# SBOMs not attached: {_sbom.NOT_ATTACHED_REASON}"
"""The line `publish` ends its text output with when it may not write the SBOMs."""


def dry_run_report(request: PublishRequest, targets: Sequence[Target]) -> list[str]:
    """What a real run would push, one line per address, and what it would refuse."""
    platforms = ", ".join(request.platform_names)
    lines = []
    for target in targets:
        for tag in target.tags:
            address = target.address(tag.name)
            if tag.immutable and tag.name in target.existing:
                verdict = "would overwrite (--force)" if request.force else "exists, would refuse"
                origin = provenance(request.sha, target.revisions.get(tag.name))
                lines.append(f"{address} ({platforms}) immutable tag {verdict}; {origin}")
            else:
                kind = "immutable" if tag.immutable else "moving"
                lines.append(f"{address} ({platforms}) would push, {kind}")
    return lines


def dry_run_signing(targets: Sequence[Target], *, login_needed: bool) -> list[str]:
    """What a real run with --signing-key would sign, one line per repository."""
    needs = "; needs --username/--password" if login_needed else ""
    return [
        f"{t.repository.name}: would sign the index and every platform manifest "
        f"(cosign format, sha256-<hex>.sig tags{needs})"
        for t in targets
    ]


def written_after_push(
    targets: Sequence[Target],
    *,
    sboms_attachable: bool,
    sbom_failures: Sequence[str],
    signing: bool,
    signing_failures: Sequence[str],
) -> list[str]:
    """Sentences saying which SBOMs were and were not attached and (with a signing
    key) which signatures were and were not written."""
    parts = []
    if sbom_failures:
        parts.append("SBOMs were not attached to: " + "; ".join(sbom_failures) + ".")
    attached = sbom_notes(targets)
    if not sboms_attachable:
        parts.append(f"SBOMs not attached: {_sbom.NOT_ATTACHED_REASON}.")
    elif attached:
        parts.append(f"Attached: {'; '.join(attached)}.")
    else:
        parts.append("No SBOM was attached.")
    if signing_failures:
        parts.append("Signing failed for: " + "; ".join(signing_failures) + ".")
    if signing:
        signed = signature_notes(targets)
        parts.append(f"Signed: {'; '.join(signed)}." if signed else "Nothing was signed.")
    return parts


def after_push_failure(refs: Sequence[str], written: Sequence[str]) -> str:
    """The one error of a publish whose images were pushed but whose SBOMs or signatures
    were not all written: what was pushed, and `written` (`written_after_push`)."""
    return " ".join(
        [
            f"the images were pushed and verified ({', '.join(refs)}), but not all their "
            "SBOMs and signatures were written.",
            *written,
            "The images stay as pushed; `inspect` shows which manifests have an SBOM and a "
            "signature, `verify` what is unsigned.",
        ]
    )


def sbom_notes(targets: Sequence[Target]) -> list[str]:
    """`<platform> <repository>@<manifest>: <repository>@<artifact> (<how>)` per attached SBOM."""
    return [
        f"{platform} {a.repository}@{a.referrer.subject}: {a.repository}@{a.referrer.digest} "
        f"({a.referrer.via})"
        for target in targets
        for platform, a in target.sboms.items()
    ]


def signature_notes(targets: Sequence[Target]) -> list[str]:
    """`<index|platform> <repository>@<manifest>: <repository>:<sha256-<hex>.sig>` per
    signature written."""
    notes = []
    for target in targets:
        manifests = {**target.platform_digests, "index": target.digest}
        name = target.repository.name
        notes += [
            f"{what} {name}@{digest}: {name}:{target.signatures[what]}"
            for what, digest in manifests.items()
            if what in target.signatures
        ]
    return notes


def notes(targets: Sequence[Target], *, sboms_attachable: bool) -> list[str]:
    """The `#` lines after the pushed tags: `# sbom …` per attached SBOM (or the one
    `NOT_ATTACHED` line), then `# signature …` per signature."""
    sboms = [f"# sbom {n}" for n in sbom_notes(targets)] if sboms_attachable else [NOT_ATTACHED]
    return [*sboms, *(f"# signature {n}" for n in signature_notes(targets))]


def no_ui_lines(no_ui: str | None) -> list[str]:
    """The `# …` note saying why there is no UI image, when the default left it out."""
    return [f"# {no_ui}"] if no_ui else []


def render(
    output: OutputFormat,
    platforms: Sequence[str],
    targets: Sequence[Target],
    refs: Sequence[str],
    *,
    sboms_attachable: bool,
    no_ui: str | None = None,
) -> str:
    """What `publish` prints: `address@digest` lines and `# …` notes (`notes`), or one
    JSON array.

    In JSON the notes' content is in each object instead (`sbom`,
    `sboms_not_attached`, `signatures`, `no_ui_image`; see `OutputFormat.JSON`).
    `no_ui` says why there is no UI image, when the source's default left it out.
    """
    if output is OutputFormat.TEXT:
        return "\n".join(
            [*refs, *notes(targets, sboms_attachable=sboms_attachable), *no_ui_lines(no_ui)]
        )
    sboms_not_attached = None if sboms_attachable else _sbom.NOT_ATTACHED_REASON
    entries = [
        {
            "component": target.spec.component.value,
            "repository": target.repository.name,
            "tag": tag.name,
            "address": target.address(tag.name),
            "digest": target.digest,
            "platforms": {
                p: target.platform_digests[p] for p in platforms if p in target.platform_digests
            },
            "sbom": {p: target.sboms[p].referrer.digest for p in platforms if p in target.sboms},
            "sboms_not_attached": sboms_not_attached,
            "signatures": {
                what: target.signatures[what]
                for what in ("index", *platforms)
                if what in target.signatures
            },
            "no_ui_image": no_ui,
        }
        for target in targets
        for tag in target.tags
    ]
    return json.dumps(entries, indent=2)
