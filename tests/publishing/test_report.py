"""publishing/report.py renders publish's output from the targets' data alone (no engine,
no registry): the text lines and `#` notes, the JSON, and the after-push sentences."""

import json

from ci.publishing.plan import Target
from ci.publishing.report import NOT_ATTACHED, notes, render, written_after_push
from ci.publishing.request import OutputFormat
from ci.registry.referrers import Attached
from ci.rules.components import Component, component_spec
from ci.rules.reference import parse_repository
from ci.rules.tags import Tag
from ci.supply_chain.sbom import NOT_ATTACHED_REASON, AttachedSbom

REPO = "ghcr.io/org/brokkr-ui"
INDEX = "sha256:" + "1" * 64
AMD = "sha256:" + "a" * 64
ARM = "sha256:" + "b" * 64
SBOM_AMD = "sha256:" + "c" * 64
PLATFORMS = ("linux/amd64", "linux/arm64")


def delivered(*, sboms: bool = True, signed: bool = True) -> Target:
    target = Target(
        component_spec(Component.UI),
        parse_repository(REPO),
        [Tag("1.2.3", immutable=True), Tag("latest", immutable=False)],
        frozenset(),
        digest=INDEX,
        platform_digests={"linux/amd64": AMD, "linux/arm64": ARM},
    )
    if sboms:
        target.sboms["linux/amd64"] = AttachedSbom(
            REPO, "linux/amd64", Attached(AMD, SBOM_AMD, "tag sha256-" + "a" * 64)
        )
    if signed:
        target.signatures["index"] = "sha256-" + "1" * 64 + ".sig"
    return target


def test_text_is_the_refs_then_one_note_per_sbom_and_signature():
    refs = [f"{REPO}:1.2.3@{INDEX}", f"{REPO}:latest@{INDEX}"]
    text = render(OutputFormat.TEXT, PLATFORMS, [delivered()], refs, sboms_attachable=True)
    assert text.splitlines() == [
        *refs,
        f"# sbom linux/amd64 {REPO}@{AMD}: {REPO}@{SBOM_AMD} (tag sha256-{'a' * 64})",
        f"# signature index {REPO}@{INDEX}: {REPO}:sha256-{'1' * 64}.sig",
    ]


def test_without_write_access_the_one_not_attached_line_replaces_the_sbom_notes():
    assert notes([delivered(sboms=False)], sboms_attachable=False) == [
        NOT_ATTACHED,
        f"# signature index {REPO}@{INDEX}: {REPO}:sha256-{'1' * 64}.sig",
    ]


def test_json_has_one_object_per_tag_with_the_same_data():
    text = render(OutputFormat.JSON, PLATFORMS, [delivered()], [], sboms_attachable=False)
    first, second = json.loads(text)
    assert first == {
        "component": "ui",
        "repository": REPO,
        "tag": "1.2.3",
        "address": f"{REPO}:1.2.3",
        "digest": INDEX,
        "platforms": {"linux/amd64": AMD, "linux/arm64": ARM},
        "sbom": {"linux/amd64": SBOM_AMD},
        "sboms_not_attached": NOT_ATTACHED_REASON,
        "signatures": {"index": f"sha256-{'1' * 64}.sig"},
        "no_ui_image": None,
    }
    assert second["tag"] == "latest"


def test_the_reason_for_no_ui_image_is_a_last_note_and_a_json_key():
    why = "no brokkr-ui image: the source holds no UI app at examples/ui"
    text = render(
        OutputFormat.TEXT,
        PLATFORMS,
        [delivered()],
        ["r@sha256:x"],
        sboms_attachable=False,
        no_ui=why,
    )
    assert text.splitlines()[-1] == f"# {why}"
    entries = json.loads(
        render(OutputFormat.JSON, PLATFORMS, [delivered()], [], sboms_attachable=False, no_ui=why)
    )
    assert [e["no_ui_image"] for e in entries] == [why, why]


def test_after_a_push_the_sentences_name_what_was_written_and_what_failed():
    sentences = written_after_push(
        [delivered()],
        sboms_attachable=True,
        sbom_failures=[f"{REPO}@{ARM} (linux/arm64): refused"],
        signing=True,
        signing_failures=[],
    )
    assert sentences == [
        f"SBOMs were not attached to: {REPO}@{ARM} (linux/arm64): refused.",
        f"Attached: linux/amd64 {REPO}@{AMD}: {REPO}@{SBOM_AMD} (tag sha256-{'a' * 64}).",
        f"Signed: index {REPO}@{INDEX}: {REPO}:sha256-{'1' * 64}.sig.",
    ]
    nothing = written_after_push(
        [delivered(sboms=False, signed=False)],
        sboms_attachable=True,
        sbom_failures=[],
        signing=True,
        signing_failures=[],
    )
    assert nothing == ["No SBOM was attached.", "Nothing was signed."]
