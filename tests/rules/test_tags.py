"""The tag engine (ci.rules.tags): SPEC "Tags", issue 2, and metadata-action conformance."""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
import semver
from hypothesis import example, given
from hypothesis import strategies as st

from ci.errors import BrokkrError
from ci.rules.tags import (
    LATEST,
    MAX_TAG_LENGTH,
    OCI_TAG,
    Tag,
    compute_tags,
    released_versions,
    sanitize_tag,
    validate_sha,
)

SHA = "0123456789abcdef0123456789abcdef01234567"


def names(ref: str = "", **kwargs: object) -> list[str]:
    """The tag names compute_tags gives, in order."""
    return [tag.name for tag in compute_tags(ref, **kwargs)]  # type: ignore[arg-type]


# --------------------------------------------------------------------------- rules


@pytest.mark.parametrize(
    ("ref", "released", "expected"),
    [
        pytest.param("refs/tags/v1.2.3", [], ["1.2.3", "1.2", "1", "latest"], id="spec-release"),
        pytest.param(
            "refs/tags/1.2.3", [], ["1.2.3", "1.2", "1", "latest"], id="release-without-v"
        ),
        pytest.param("refs/tags/v1.2.3-rc.1", [], ["1.2.3-rc.1"], id="spec-prerelease"),
        pytest.param("refs/tags/v2.0.0-alpha", [], ["2.0.0-alpha"], id="prerelease-alpha"),
        pytest.param("refs/tags/v0.1.2", [], ["0.1.2", "0.1", "0", "latest"], id="zero-major"),
        pytest.param("refs/tags/v0.0.1", [], ["0.0.1", "0.0", "0", "latest"], id="zero-zero"),
        pytest.param(
            "refs/tags/v1.2.3+build.5",
            [],
            ["1.2.3", "1.2", "1", "latest"],
            id="build-metadata-dropped-like-metadata-action",
        ),
        pytest.param(
            "refs/tags/v1.2.3-rc.1+exp.sha.5114f85",
            [],
            ["1.2.3-rc.1"],
            id="prerelease-with-build-metadata",
        ),
        pytest.param("refs/tags/release1", [], ["release1"], id="non-semver-alone"),
        pytest.param("refs/tags/v1.2", [], ["v1.2"], id="non-semver-short-version"),
        pytest.param("refs/tags/p1/v1.0.0", [], ["p1-v1.0.0"], id="non-semver-slash"),
        pytest.param("refs/tags/.hidden", [], ["hidden"], id="non-semver-leading-dot"),
        pytest.param("refs/tags/V1.2.3", [], ["V1.2.3"], id="capital-v-is-not-semver"),
        pytest.param("refs/tags/v01.2.3", [], ["v01.2.3"], id="leading-zero-is-not-semver"),
        pytest.param("refs/tags/vv1.2.3", [], ["vv1.2.3"], id="double-v-is-not-semver"),
    ],
)
def test_tag_refs(ref: str, released: list[str], expected: list[str]) -> None:
    assert names(ref, released=released) == expected


@pytest.mark.parametrize(
    ("version", "released", "expected"),
    [
        pytest.param(
            "1.2.3", ["v1.2.0", "2.0.0"], ["1.2.3", "1.2", "1"], id="older-major-no-latest"
        ),
        pytest.param(
            "1.2.4", ["1.2.0", "1.2.3", "1.3.0"], ["1.2.4", "1.2"], id="patch-of-older-minor"
        ),
        pytest.param("1.2.1", ["1.2.5"], ["1.2.1"], id="patch-below-released-patch"),
        pytest.param(
            "1.3.0", ["1.2.0", "1.2.9"], ["1.3.0", "1.3", "1", "latest"], id="newer-minor"
        ),
        pytest.param("2.0.0", ["1.9.9", "v1.0.0"], ["2.0.0", "2.0", "2", "latest"], id="new-major"),
        pytest.param(
            "1.2.3", ["1.2.3", "1.2.0"], ["1.2.3", "1.2", "1", "latest"], id="idempotent-republish"
        ),
        pytest.param(
            "1.2.3", ["v1.2.3", "v2.0.0"], ["1.2.3", "1.2", "1"], id="republish-older-line"
        ),
        pytest.param(
            "1.2.3",
            ["1.3.0-rc.1", "2.0.0-beta", "v1.2.4-alpha"],
            ["1.2.3", "1.2", "1", "latest"],
            id="prereleases-never-block",
        ),
        pytest.param(
            "1.2.3", ["1.2.3_build.9"], ["1.2.3", "1.2", "1", "latest"], id="equal-ignoring-build"
        ),
        pytest.param(
            "1.2.3+fork.1", ["1.2.3"], ["1.2.3", "1.2", "1", "latest"], id="build-vs-plain"
        ),
        pytest.param("0.1.2", ["0.2.0"], ["0.1.2", "0.1"], id="zero-line-is-a-major-line"),
        pytest.param("0.9.0", ["1.0.0"], ["0.9.0", "0.9", "0"], id="zero-major-below-one"),
        pytest.param("1.3.0-rc.2", ["1.2.0"], ["1.3.0-rc.2"], id="prerelease-never-moves"),
        pytest.param("3.0.0", [], ["3.0.0", "3.0", "3", "latest"], id="nothing-released"),
    ],
)
def test_moving_tags_never_move_backwards(
    version: str, released: list[str], expected: list[str]
) -> None:
    assert names(f"refs/tags/v{version}", released=released) == expected


def test_released_order_does_not_matter() -> None:
    released = ["2.0.0", "1.2.9", "v1.3.0-rc.1", "1.1.0"]
    assert names("refs/tags/v1.2.10", released=released) == names(
        "refs/tags/v1.2.10", released=list(reversed(released))
    )


def test_released_accepts_any_iterable() -> None:
    assert names("refs/tags/v1.2.0", released=iter(("1.3.0",))) == ["1.2.0", "1.2"]
    assert names("refs/tags/v1.2.0", released=frozenset({"1.1.0"})) == [
        "1.2.0",
        "1.2",
        "1",
        "latest",
    ]


@pytest.mark.parametrize(
    ("branch", "expected"),
    [
        pytest.param("main", ["main", "main-sha-0123456"], id="spec-main"),
        pytest.param("develop", ["develop", "develop-sha-0123456"], id="spec-develop"),
        pytest.param("feature/foo", ["feature-foo", "feature-foo-sha-0123456"], id="slash"),
        pytest.param(
            "my/feature#1245", ["my-feature-1245", "my-feature-1245-sha-0123456"], id="hash"
        ),
        pytest.param("a//b@@c", ["a-b-c", "a-b-c-sha-0123456"], id="runs-become-one-dash"),
        pytest.param("Fix/UPPER", ["Fix-UPPER", "Fix-UPPER-sha-0123456"], id="case-kept"),
        pytest.param("_private", ["_private", "_private-sha-0123456"], id="underscore-first-ok"),
        pytest.param("/lead", ["lead", "lead-sha-0123456"], id="invalid-first-char-dropped"),
        pytest.param("-x", ["x", "x-sha-0123456"], id="dash-first-dropped"),
        pytest.param("über", ["ber", "ber-sha-0123456"], id="non-ascii-first"),
        pytest.param("v1.2.3", ["v1.2.3", "v1.2.3-sha-0123456"], id="v-version-branch-ok"),
        pytest.param("release/1.2", ["release-1.2", "release-1.2-sha-0123456"], id="release-br"),
        pytest.param("a" * 116, ["a" * 116, "a" * 116 + "-sha-0123456"], id="longest-untruncated"),
        pytest.param("a" * 200, ["a" * 116, "a" * 116 + "-sha-0123456"], id="truncated"),
        pytest.param(
            "a" * 115 + "/" + "b" * 40,
            ["a" * 115, "a" * 115 + "-sha-0123456"],
            id="truncation-drops-dangling-dash",
        ),
    ],
)
def test_branch_refs(branch: str, expected: list[str]) -> None:
    assert names(f"refs/heads/{branch}", sha=SHA) == expected
    assert all(len(name) <= MAX_TAG_LENGTH for name in expected)


def test_branch_sha_is_normalized_to_lowercase() -> None:
    assert names("refs/heads/main", sha="ABCDEF0") == ["main", "main-sha-abcdef0"]


@pytest.mark.parametrize(
    ("ref", "pr", "expected"),
    [
        pytest.param("refs/pull/15/merge", None, ["pr-15"], id="merge-ref"),
        pytest.param("refs/pull/15/head", None, ["pr-15"], id="head-ref"),
        pytest.param("", 7, ["pr-7"], id="pr-option"),
        pytest.param("refs/pull/7/merge", 7, ["pr-7"], id="pr-and-matching-ref"),
        pytest.param("refs/pull/123456/merge", None, ["pr-123456"], id="big-number"),
    ],
)
def test_pull_requests(ref: str, pr: int | None, expected: list[str]) -> None:
    assert names(ref, pr=pr) == expected


def test_sha_is_accepted_but_unused_outside_branches() -> None:
    assert names("refs/tags/v1.0.0", sha=SHA) == ["1.0.0", "1.0", "1", "latest"]
    assert names("refs/pull/3/merge", sha=SHA) == ["pr-3"]


@pytest.mark.parametrize(
    ("kwargs", "expected"),
    [
        pytest.param(
            {"ref": "refs/tags/v1.2.3"},
            [("1.2.3", True), ("1.2", False), ("1", False), ("latest", False)],
            id="release",
        ),
        pytest.param({"ref": "refs/tags/v1.2.3-rc.1"}, [("1.2.3-rc.1", True)], id="prerelease"),
        pytest.param({"ref": "refs/tags/nightly-2024"}, [("nightly-2024", True)], id="git-tag"),
        pytest.param(
            {"ref": "refs/heads/main", "sha": SHA},
            [("main", False), ("main-sha-0123456", True)],
            id="branch",
        ),
        pytest.param({"ref": "refs/pull/4/merge"}, [("pr-4", False)], id="pr"),
    ],
)
def test_immutability(kwargs: dict[str, str], expected: list[tuple[str, bool]]) -> None:
    assert compute_tags(**kwargs) == [Tag(name, immutable) for name, immutable in expected]


def test_tag_refuses_invalid_name() -> None:
    with pytest.raises(ValueError, match="not a valid OCI tag"):
        Tag("-bad", immutable=False)


def test_tag_str_is_its_name() -> None:
    assert str(Tag("1.2.3", immutable=True)) == "1.2.3"


# -------------------------------------------------------------------------- errors

ACCEPTED = re.escape("refs/tags/<tag>, refs/heads/<branch>, refs/pull/<N>/merge")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({}, f"Nothing to tag.*{ACCEPTED}", id="empty-ref-no-pr"),
        pytest.param({"ref": "main"}, f"not understood.*{ACCEPTED}", id="bare-branch"),
        pytest.param({"ref": "v1.2.3"}, f"not understood.*{ACCEPTED}", id="bare-tag"),
        pytest.param({"ref": "refs/remotes/origin/main"}, ACCEPTED, id="remote-ref"),
        pytest.param({"ref": " refs/heads/main", "sha": SHA}, ACCEPTED, id="leading-space"),
        pytest.param({"ref": "refs/tags/"}, f"names no tag.*{ACCEPTED}", id="empty-tag"),
        pytest.param({"ref": "refs/heads/"}, f"names no branch.*{ACCEPTED}", id="empty-branch"),
        pytest.param({"ref": "refs/heads/main"}, "needs --sha", id="branch-without-sha"),
        pytest.param({"ref": "refs/pull/abc/merge"}, "refs/pull/<N>/merge", id="pr-not-number"),
        pytest.param({"ref": "refs/pull/0/merge"}, "N a number from 1", id="pr-zero-ref"),
        pytest.param({"ref": "refs/pull/01/merge"}, "malformed", id="pr-leading-zero"),
        pytest.param({"ref": "refs/pull/15"}, "malformed", id="pr-no-suffix"),
        pytest.param({"ref": "refs/pull/15/close"}, "malformed", id="pr-other-suffix"),
        pytest.param({"ref": "refs/pull/15/merge", "pr": 16}, "contradicts", id="pr-mismatch"),
        pytest.param(
            {"ref": "refs/heads/main", "sha": SHA, "pr": 3},
            "cannot be combined",
            id="pr-with-branch",
        ),
        pytest.param({"ref": "refs/tags/v1.0.0", "pr": 3}, "cannot be combined", id="pr-with-tag"),
        pytest.param({"pr": 0}, "from 1", id="pr-zero"),
        pytest.param({"pr": -4}, "from 1", id="pr-negative"),
        pytest.param({"pr": True}, "from 1", id="pr-bool"),
        pytest.param({"pr": "5"}, "from 1", id="pr-string"),
        pytest.param({"ref": "refs/heads/main", "sha": "123456"}, "7 to 40", id="sha-short"),
        pytest.param({"ref": "refs/heads/main", "sha": "g" * 40}, "hexadecimal", id="sha-not-hex"),
        pytest.param({"ref": "refs/heads/main", "sha": "a" * 41}, "7 to 40", id="sha-long"),
        pytest.param({"ref": "refs/tags/v1.0.0", "sha": "nope"}, "not a git commit", id="sha-tag"),
        pytest.param({"ref": "refs/heads/main", "sha": f"{SHA}\n"}, "7 to 40", id="sha-newline"),
        pytest.param(
            {"ref": "refs/heads/###", "sha": SHA}, "no character usable", id="branch-unusable"
        ),
        pytest.param({"ref": "refs/tags/+++"}, "no character usable", id="tag-unusable"),
        pytest.param(
            {"ref": "refs/heads/latest", "sha": SHA}, "moving release tag", id="branch-latest"
        ),
        pytest.param({"ref": "refs/heads/1", "sha": SHA}, "moving release tag", id="branch-major"),
        pytest.param(
            {"ref": "refs/heads/1.2", "sha": SHA}, "moving release tag", id="branch-minor"
        ),
        pytest.param(
            {"ref": "refs/heads/1.2.3", "sha": SHA}, "release's version tag", id="branch-version"
        ),
        pytest.param(
            {"ref": "refs/heads/1.2.3_b", "sha": SHA},
            "release's version tag",
            id="branch-version-with-build",
        ),
        pytest.param({"ref": "refs/heads/pr-5", "sha": SHA}, "pull request's tag", id="branch-pr"),
        pytest.param(
            {"ref": "refs/heads/x-sha-abcdef1", "sha": SHA}, "sha-<7 hex> tag", id="branch-sha-tag"
        ),
        pytest.param({"ref": "refs/tags/latest"}, "moving release tag", id="git-tag-latest"),
        pytest.param({"ref": "refs/tags/2"}, "moving release tag", id="git-tag-major"),
        pytest.param({"ref": "refs/tags/pr-9"}, "pull request's tag", id="git-tag-pr"),
        pytest.param({"ref": "refs/tags/v1.0.0-" + "a" * 130}, "at most 128", id="version-long"),
        pytest.param(
            {"ref": "refs/tags/v1.0.0", "released": ["banana"]},
            "not a full semver",
            id="released-garbage",
        ),
        pytest.param(
            {"ref": "refs/tags/v1.0.0", "released": ["1.2"]},
            "released_versions",
            id="released-moving-tag",
        ),
        pytest.param(
            {"ref": "refs/tags/v1.0.0", "released": ["latest"]},
            "not a full semver",
            id="released-latest",
        ),
    ],
)
def test_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(BrokkrError, match=message):
        compute_tags(**kwargs)  # type: ignore[arg-type]


def test_error_shortens_huge_input() -> None:
    with pytest.raises(BrokkrError) as caught:
        compute_tags("x" * 10_000)
    assert len(str(caught.value)) < 400


def test_released_as_one_string_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="not one string"):
        compute_tags("refs/tags/v1.0.0", released="1.0.0")


# ----------------------------------------------------------------- helper functions


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        pytest.param("main", "main", id="valid-unchanged"),
        pytest.param("_x", "_x", id="underscore-first"),
        pytest.param("a-", "a-", id="valid-trailing-dash-kept"),
        pytest.param("feature/foo", "feature-foo", id="slash"),
        pytest.param("a/ /b", "a-b", id="run"),
        pytest.param("..a", "a", id="leading-dots"),
        pytest.param("-.-a", "a", id="leading-mixed"),
        pytest.param("a+b", "a-b", id="plus"),
        pytest.param("日本x", "x", id="non-ascii-run"),
        pytest.param("x" * 129, "x" * 128, id="truncate-128"),
    ],
)
def test_sanitize_tag(name: str, expected: str) -> None:
    assert sanitize_tag(name) == expected


def test_sanitize_tag_max_length() -> None:
    assert sanitize_tag("abc.def", max_length=4) == "abc"
    assert sanitize_tag("abcdef", max_length=1) == "a"


@pytest.mark.parametrize("name", ["", "-", "...", "/", "€€", " "])
def test_sanitize_tag_refuses_unusable(name: str) -> None:
    with pytest.raises(BrokkrError, match="no character usable"):
        sanitize_tag(name)


@pytest.mark.parametrize("max_length", [0, 129, -1])
def test_sanitize_tag_refuses_bad_max_length(max_length: int) -> None:
    with pytest.raises(ValueError, match="max_length"):
        sanitize_tag("x", max_length=max_length)


@pytest.mark.parametrize(
    ("sha", "expected"),
    [
        ("abcdef0", "abcdef0"),
        ("ABCDEF0", "abcdef0"),
        (SHA, SHA),
        (SHA.upper(), SHA),
    ],
)
def test_validate_sha(sha: str, expected: str) -> None:
    assert validate_sha(sha) == expected


@pytest.mark.parametrize("sha", ["", "abcdef", "a" * 41, "abcdefg", " abcdef0", "abc-def0"])
def test_validate_sha_refuses(sha: str) -> None:
    with pytest.raises(BrokkrError, match="7 to 40 hexadecimal"):
        validate_sha(sha)


def test_released_versions_filters_a_registry_listing() -> None:
    listing = [
        "latest",
        "1",
        "1.2",
        "2.0.0",
        "1.2.3",
        "v1.0.0",
        "1.3.0-rc.1",
        "1.2.3_build.5",
        "main",
        "main-sha-0123456",
        "pr-4",
        "sha256-abc.sig",
        "1.2.3",
        "V1.2.3",
    ]
    assert released_versions(listing) == [
        "v1.0.0",
        "1.2.3",
        "1.2.3_build.5",
        "1.3.0-rc.1",
        "2.0.0",
    ]


def test_released_versions_feed_compute_tags() -> None:
    listing = ["latest", "1", "1.2", "1.2.0", "2", "2.0", "2.0.0", "main"]
    assert names("refs/tags/v1.2.1", released=released_versions(listing)) == ["1.2.1", "1.2", "1"]
    assert names("refs/tags/v1.1.0", released=released_versions(listing)) == ["1.1.0", "1.1"]


# ------------------------------------------------- docker/metadata-action conformance
#
# Source: github.com/docker/metadata-action, __tests__/meta.test.ts and its fixtures
# __tests__/fixtures/event_*.env (GITHUB_REF / GITHUB_SHA), and src/meta.ts.
# The equivalent metadata-action configuration of SPEC "Tags" is:
#
#   tags: |
#     type=semver,pattern={{version}}
#     type=semver,pattern={{major}}.{{minor}}
#     type=semver,pattern={{major}}
#     type=ref,event=branch
#     type=ref,event=pr
#     type=sha,prefix={{branch}}-sha-,enable=${{ startsWith(github.ref, 'refs/heads/') }}
#   flavor: latest=auto
#
# `upstream` is what metadata-action yields for that configuration: either the
# expectation of the named test case, or (case marked "src/meta.ts") what its
# source computes for the fixture. `difference` says why ours differs:
#   ""       identical list;
#   other    SPEC intentionally differs, explained in the text.

SHA_860 = "860c1904a1ce19322e91ac35af1ab07466440c37"
SHA_266 = "266574110acf203503badf966df2ea24b5d732d7"
SHA_983 = "983315b5e8d46e46fc4c49869e85e7ee5fb289ba"
SHA_A9C = "a9c8c5828b91be19d9728548b24759e352367ef1"


@dataclass(frozen=True)
class Conformance:
    """One metadata-action case and what our engine gives for it."""

    case: str
    fixture: str
    ref: str
    sha: str
    upstream: tuple[str, ...]
    ours: tuple[str, ...]
    difference: str = ""


CONFORMANCE = [
    Conformance(
        "tag11",
        "event_tag_v1.1.1.env",
        "refs/tags/v1.1.1",
        SHA_860,
        ("1.1.1", "1.1", "1", "latest"),
        ("1.1.1", "1.1", "1", "latest"),
    ),
    Conformance(
        "tag13",
        "event_tag_v2.0.8-beta.67.env",
        "refs/tags/v2.0.8-beta.67",
        SHA_860,
        ("2.0.8-beta.67",),
        ("2.0.8-beta.67",),
    ),
    Conformance(
        # Fixture only; tag11's configuration applied to it.
        "src/meta.ts procSemver",
        "event_tag_v101.12.13.env",
        "refs/tags/v101.12.13",
        SHA_860,
        ("101.12.13", "101.12", "101", "latest"),
        ("101.12.13", "101.12", "101", "latest"),
    ),
    Conformance(
        # push07 (type=ref,event=branch + type=sha) with our {branch}-sha- prefix.
        "push07",
        "event_push_dev.env",
        "refs/heads/dev",
        SHA_860,
        ("dev", "dev-sha-860c190"),
        ("dev", "dev-sha-860c190"),
    ),
    Conformance(
        # push03 (branch tag) plus type=sha with our prefix.
        "push03",
        "event_push_master.env",
        "refs/heads/master",
        SHA_266,
        ("master", "master-sha-2665741"),
        ("master", "master-sha-2665741"),
    ),
    Conformance(
        # push11/push12 use this fixture; src/meta.ts sanitizeTag replaces each run
        # of characters outside [a-zA-Z0-9._-] with '-', as sanitize_tag does.
        "src/meta.ts sanitizeTag",
        "event_push_invalidchars.env",
        "refs/heads/my/feature#1245",
        SHA_983,
        ("my-feature-1245", "my-feature-1245-sha-983315b"),
        ("my-feature-1245", "my-feature-1245-sha-983315b"),
    ),
    Conformance(
        # pr03 without its unprefixed sha tag: our type=sha is enabled on branches only.
        "pr03",
        "event_pull_request.env",
        "refs/pull/15/merge",
        SHA_A9C,
        ("pr-15",),
        ("pr-15",),
    ),
    Conformance(
        "src/meta.ts procRefPr",
        "(refs/pull/15/head)",
        "refs/pull/15/head",
        SHA_A9C,
        ("pr-15-head",),
        ("pr-15",),
        "issue 2 accepts refs/pull/<N>/head as pull request N; procRefPr strips only /merge",
    ),
    Conformance(
        "tag01",
        "event_tag_release1.env",
        "refs/tags/release1",
        SHA_860,
        ("release1", "latest"),
        ("release1",),
        "SPEC: a non-semver git tag gets its sanitized name alone, never latest "
        "(metadata-action's type=ref,event=tag with latest=auto adds latest)",
    ),
    Conformance(
        "tag02",
        "event_tag_20200110-RC2.env",
        "refs/tags/20200110-RC2",
        SHA_860,
        ("20200110-RC2", "latest"),
        ("20200110-RC2",),
        "SPEC: a non-semver git tag never takes latest",
    ),
    Conformance(
        # tag14 adds type=ref,event=tag with latest=false: the metadata-action
        # configuration that matches SPEC's rule for non-semver git tags.
        "tag14",
        "event_tag_sometag.env",
        "refs/tags/sometag",
        SHA_860,
        ("sometag",),
        ("sometag",),
    ),
    Conformance(
        # tag17/tag18 use this fixture with type=match; procRefTag + sanitizeTag give
        # p1-v1.0.0 and latest=auto adds latest.
        "src/meta.ts procRefTag",
        "event_tag_p1-v1.0.0.env",
        "refs/tags/p1/v1.0.0",
        SHA_860,
        ("p1-v1.0.0", "latest"),
        ("p1-v1.0.0",),
        "SPEC: a non-semver git tag never takes latest",
    ),
    Conformance(
        # node-semver's `version` property omits build metadata, so {{version}} drops it.
        "src/meta.ts procSemver",
        "event_tag_v9.5.7-alpha.2+fork.3.1.8.env",
        "refs/tags/v9.5.7-alpha.2+fork.3.1.8",
        SHA_860,
        ("9.5.7-alpha.2",),
        ("9.5.7-alpha.2",),
    ),
]


@pytest.mark.parametrize("case", CONFORMANCE, ids=lambda c: f"{c.case}:{c.fixture}")
def test_metadata_action_conformance(case: Conformance) -> None:
    assert tuple(names(case.ref, sha=case.sha)) == case.ours
    if case.difference == "":
        assert case.ours == case.upstream
    else:
        assert set(case.ours) != set(case.upstream)


def test_metadata_action_tag_1_2_is_refused() -> None:
    # Fixture event_tag_1.2.env (GITHUB_REF=refs/tags/1.2): `1.2` is not semver, so
    # metadata-action's type=semver emits nothing (only tag24's pep440 handles it).
    # SPEC would publish the name alone, but `1.2` is the moving tag of the 1.2
    # line; we refuse it rather than pin that line to an unrelated image.
    with pytest.raises(BrokkrError, match="moving release tag"):
        compute_tags("refs/tags/1.2", sha=SHA_860)


# ------------------------------------------------------------------------ properties

versions = st.builds(
    semver.Version,
    major=st.integers(0, 3),
    minor=st.integers(0, 3),
    patch=st.integers(0, 3),
    prerelease=st.none() | st.sampled_from(["rc.1", "rc.2", "alpha", "beta.1"]),
    build=st.none() | st.sampled_from(["b.1", "fork.2"]),
)


def spellings(version: semver.Version) -> st.SearchStrategy[str]:
    """The ways a released version may be written: with v, without, '+' as '_'."""
    text = str(version)
    return st.sampled_from([text, f"v{text}", text.replace("+", "_")])


released_lists = st.lists(versions.flatmap(spellings), max_size=8)


def parse(text: str) -> semver.Version:
    return semver.Version.parse(text.removeprefix("v").replace("_", "+"))


@given(version=versions, released=released_lists)
def test_moving_tags_follow_the_rule(version: semver.Version, released: list[str]) -> None:
    got = names(f"refs/tags/v{version}", released=released)
    stable = [r for r in map(parse, released) if r.prerelease is None]
    is_stable = version.prerelease is None
    minor_ok = all(version >= r for r in stable if (r.major, r.minor) == version.to_tuple()[:2])
    major_ok = all(version >= r for r in stable if r.major == version.major)
    latest_ok = all(version >= r for r in stable)
    assert got[0] == str(version.replace(build=None))
    assert (f"{version.major}.{version.minor}" in got) == (is_stable and minor_ok)
    assert (f"{version.major}" in got) == (is_stable and major_ok)
    assert (LATEST in got) == (is_stable and latest_ok)


@given(sequence=st.lists(versions, min_size=1, max_size=12))
def test_publishing_in_any_order_never_moves_a_tag_backwards(
    sequence: list[semver.Version],
) -> None:
    registry: dict[str, semver.Version] = {}  # tag -> version it points at
    for version in sequence:
        released = released_versions(registry)
        for tag in compute_tags(f"refs/tags/v{version}", released=released):
            if not tag.immutable and tag.name in registry:
                assert version >= registry[tag.name], f"{tag.name} moved backwards"
            registry[tag.name] = version
    stable = [v for v in sequence if v.prerelease is None]
    if stable:
        assert registry[LATEST] == max(stable)
        for v in stable:
            assert registry[f"{v.major}.{v.minor}"] == max(
                s for s in stable if (s.major, s.minor) == (v.major, v.minor)
            )
            assert registry[f"{v.major}"] == max(s for s in stable if s.major == v.major)
    else:
        assert LATEST not in registry


@given(version=versions, released=released_lists, data=st.data())
def test_deterministic(version: semver.Version, released: list[str], data: st.DataObject) -> None:
    shuffled = data.draw(st.permutations(released))
    first = compute_tags(f"refs/tags/v{version}", released=released)
    assert first == compute_tags(f"refs/tags/v{version}", released=released)
    assert first == compute_tags(f"refs/tags/v{version}", released=shuffled)


@given(branch=st.text(min_size=1), sha=st.from_regex(r"[0-9a-fA-F]{7,40}", fullmatch=True))
@example(branch="feature/" + "x" * 300, sha=SHA)
def test_branch_tags_are_valid_oci_tags(branch: str, sha: str) -> None:
    for name in (f"feature/{branch}", branch):
        try:
            tags = compute_tags(f"refs/heads/{name}", sha=sha)
        except BrokkrError as error:
            refusal = str(error)
        else:
            refusal = ""
        if refusal:
            # Only two reasons are legitimate, and neither applies to a feature/ branch.
            assert not name.startswith("feature/"), refusal
            unusable = re.search(r"[A-Za-z0-9_]", name) is None
            assert unusable or "collides" in refusal, refusal
            continue
        assert [OCI_TAG.fullmatch(tag.name) is not None for tag in tags] == [True, True]
        assert tags[1].name == f"{tags[0].name}-sha-{sha[:7].lower()}"
        assert [tag.immutable for tag in tags] == [False, True]


@given(
    ref=st.text()
    | st.builds("refs/{}/{}".format, st.sampled_from(["tags", "heads", "pull"]), st.text()),
    sha=st.just(SHA) | st.text(max_size=50),
    pr=st.none() | st.integers(-3, 50),
)
def test_any_input_gives_valid_tags_or_a_brokkr_error(ref: str, sha: str, pr: int | None) -> None:
    try:
        tags = compute_tags(ref, sha=sha, pr=pr)
    except BrokkrError:
        return
    assert tags
    assert all(OCI_TAG.fullmatch(tag.name) for tag in tags)
    # Exactly one tag pins the build (the version, git tag or <branch>-sha), except
    # a pull request's pr-N, which moves with every push to the pull request.
    pinned = [tag for tag in tags if tag.immutable]
    assert len(pinned) == (0 if tags[0].name.startswith("pr-") else 1)


@given(name=st.text(min_size=1).filter(lambda s: re.search(r"[A-Za-z0-9_]", s) is not None))
def test_sanitize_tag_output_is_valid_and_stable(name: str) -> None:
    tag = sanitize_tag(name)
    assert OCI_TAG.fullmatch(tag)
    assert sanitize_tag(tag) == tag


@given(tag=st.from_regex(OCI_TAG, fullmatch=True))
def test_sanitize_tag_keeps_valid_tags(tag: str) -> None:
    assert sanitize_tag(tag) == tag


@given(version=versions)
def test_published_version_tags_are_recognized_as_released(version: semver.Version) -> None:
    full = compute_tags(f"refs/tags/v{version}")[0].name
    assert released_versions(["latest", full, "main"]) == [full]
    assert parse(full) == version.replace(build=None)


# --------------------------------------------------------------------------- boundaries
# Each test pins a limit exactly where it lies: the last value accepted and the
# first refused, so moving a limit by one fails a test.


def test_pr_1_is_the_first_pull_request() -> None:
    assert names(pr=1) == ["pr-1"]
    assert names("refs/pull/1/merge") == ["pr-1"]
    assert names("refs/pull/1/head", pr=1) == ["pr-1"]


@pytest.mark.parametrize("pr", [0, -1])
def test_pr_below_1_is_refused_naming_the_flag_and_value(pr: int) -> None:
    with pytest.raises(BrokkrError) as caught:
        compute_tags(pr=pr)
    assert str(caught.value) == f"--pr must be a pull request number from 1, not {pr!r}."


def test_a_version_of_exactly_128_characters_is_accepted() -> None:
    version = "1.0.0-" + "a" * 122
    assert len(version) == MAX_TAG_LENGTH
    tags = compute_tags(f"refs/tags/v{version}")
    assert tags == [Tag(version, immutable=True)]
    # Build metadata is dropped before the length is counted.
    assert names(f"refs/tags/v{version}+build.7") == [version]


def test_a_version_of_129_characters_is_refused_naming_it() -> None:
    version = "1.0.0-" + "a" * 123
    with pytest.raises(BrokkrError) as caught:
        compute_tags(f"refs/tags/v{version}")
    message = str(caught.value)
    assert "is 129 characters long" in message
    assert f"at most {MAX_TAG_LENGTH}" in message
    assert "'v1.0.0-aaa" in message  # the version it refuses, shortened


BRANCH_LIMIT = MAX_TAG_LENGTH - len("-sha-0123456")


def test_a_branch_that_sanitises_to_exactly_the_limit_is_kept_whole() -> None:
    assert BRANCH_LIMIT == 116
    branch = "feature/" + "b" * (BRANCH_LIMIT - len("feature-"))
    base = "feature-" + "b" * (BRANCH_LIMIT - len("feature-"))
    assert len(base) == BRANCH_LIMIT
    tags = names(f"refs/heads/{branch}", sha=SHA)
    assert tags == [base, f"{base}-sha-0123456"]
    assert len(tags[1]) == MAX_TAG_LENGTH


def test_a_branch_one_character_over_the_limit_is_cut_to_it() -> None:
    tags = names("refs/heads/" + "b" * (BRANCH_LIMIT + 1), sha=SHA)
    assert tags == ["b" * BRANCH_LIMIT, "b" * BRANCH_LIMIT + "-sha-0123456"]


def test_a_branch_cut_on_a_separator_drops_it() -> None:
    tags = names("refs/heads/" + "b" * (BRANCH_LIMIT - 1) + "-x", sha=SHA)
    assert tags[0] == "b" * (BRANCH_LIMIT - 1)


@pytest.mark.parametrize(
    ("kwargs", "named"),
    [
        pytest.param({"ref": "refs/heads/main", "sha": "xyz1234"}, "'xyz1234'", id="sha"),
        pytest.param({"ref": "refs/heads/main"}, "'refs/heads/main'", id="branch-without-sha"),
        pytest.param({"ref": "refs/oops/1"}, "'refs/oops/1'", id="ref"),
        pytest.param({"ref": "refs/pull/2/merge", "pr": 3}, "--pr 3", id="pr-contradiction"),
        pytest.param({"ref": "refs/heads/1.2", "sha": SHA}, "branch '1.2'", id="release-clash"),
        pytest.param(
            {"ref": "refs/tags/v1.0.0", "released": ["one"]}, "'one'", id="released-entry"
        ),
    ],
)
def test_errors_name_the_input_they_reject(kwargs: dict[str, object], named: str) -> None:
    with pytest.raises(BrokkrError) as caught:
        compute_tags(**kwargs)  # type: ignore[arg-type]
    assert named in str(caught.value)


# --------------------------------------------------- two policies: the seed's and today's
#
# The seed's policy (SPEC "Tags", the default) and Brokkr's policy since v0.9.1
# (docs/src/reference/container-images.md at df0be43: release tags without a `v`,
# `{branch}` alone, `pr-{number}`, `nightly` for the scheduled broker+agent build, "There
# is no immutable per-commit tag"). Today's policy is `commit_tag=False`, and its
# nightly workflow publishes with `nightly=True`.

SEED = {"commit_tag": True}
TODAY = {"commit_tag": False}


@dataclass(frozen=True)
class PolicyCase:
    """One trigger of Brokkr's workflows and the tags each policy gives it."""

    trigger: str
    kwargs: dict[str, object]
    seed: tuple[tuple[str, bool], ...]
    today: tuple[tuple[str, bool], ...]


POLICY_CASES = [
    PolicyCase(
        "release v1.2.3 (release.yml)",
        {"ref": "refs/tags/v1.2.3", "sha": SHA},
        (("1.2.3", True), ("1.2", False), ("1", False), ("latest", False)),
        (("1.2.3", True), ("1.2", False), ("1", False), ("latest", False)),
    ),
    PolicyCase(
        "pre-release v1.3.0-rc.1",
        {"ref": "refs/tags/v1.3.0-rc.1", "sha": SHA},
        (("1.3.0-rc.1", True),),
        (("1.3.0-rc.1", True),),
    ),
    PolicyCase(
        "push to main (build-and-test.yml)",
        {"ref": "refs/heads/main", "sha": SHA},
        (("main", False), ("main-sha-0123456", True)),
        (("main", False),),
    ),
    PolicyCase(
        "pull request 123",
        {"ref": "refs/pull/123/merge", "sha": SHA},
        (("pr-123", False),),
        (("pr-123", False),),
    ),
    PolicyCase(
        "scheduled nightly on main (nightly.yml)",
        {"ref": "refs/heads/main", "sha": SHA, "nightly": True},
        (("nightly", False),),
        (("nightly", False),),
    ),
]


def tagged(**kwargs: object) -> tuple[tuple[str, bool], ...]:
    return tuple((t.name, t.immutable) for t in compute_tags(**kwargs))  # type: ignore[arg-type]


@pytest.mark.parametrize("case", POLICY_CASES, ids=lambda c: c.trigger)
def test_the_seed_policy_is_the_default(case: PolicyCase) -> None:
    assert tagged(**case.kwargs) == case.seed
    assert tagged(**case.kwargs, **SEED) == case.seed


@pytest.mark.parametrize("case", POLICY_CASES, ids=lambda c: c.trigger)
def test_todays_policy_has_no_per_commit_tag(case: PolicyCase) -> None:
    tags = tagged(**case.kwargs, **TODAY)
    assert tags == case.today
    assert not any("-sha-" in name for name, _ in tags)


@pytest.mark.parametrize("policy", [SEED, TODAY], ids=["seed", "today"])
def test_no_two_triggers_of_a_policy_publish_the_same_tag(policy: dict[str, object]) -> None:
    # Each trigger is a different workflow (or job) in Brokkr's repository: release,
    # branch push, pull request and nightly must never write one another's tags.
    seen: dict[str, str] = {}
    for case in POLICY_CASES:
        for name, _ in tagged(**case.kwargs, **policy):
            assert name not in seen, f"{case.trigger} and {seen[name]} both publish {name}"
            seen[name] = case.trigger


def test_todays_branch_push_needs_no_sha() -> None:
    assert names("refs/heads/main", commit_tag=False) == ["main"]
    assert names("refs/heads/feature/x", commit_tag=False) == ["feature-x"]


def test_a_long_branch_has_the_same_branch_tag_under_both_policies() -> None:
    branch = "b" * 200
    seed = names(f"refs/heads/{branch}", sha=SHA)
    today = names(f"refs/heads/{branch}", sha=SHA, commit_tag=False)
    assert today == seed[:1]


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"ref": "refs/heads/main"}, id="main"),
        pytest.param({"ref": "refs/heads/release/0.9", "sha": SHA}, id="other-branch"),
        pytest.param({"ref": ""}, id="no-ref"),
        pytest.param({"ref": "refs/heads/main", "commit_tag": False}, id="today"),
        pytest.param({"ref": "refs/heads/main", "released": ["9.9.9"]}, id="with-released"),
    ],
)
def test_nightly_is_one_moving_tag(kwargs: dict[str, object]) -> None:
    tags = compute_tags(nightly=True, **kwargs)  # type: ignore[arg-type]
    assert tags == [Tag("nightly", immutable=False)]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        pytest.param({"ref": "refs/tags/v1.2.3"}, "never tags a release", id="release"),
        pytest.param({"ref": "refs/tags/nightly"}, "never tags a release", id="git-tag"),
        pytest.param({"ref": "refs/pull/4/merge"}, "pull request", id="pr-ref"),
        pytest.param({"pr": 4}, "--pr 4", id="pr-flag"),
        pytest.param({"ref": "main"}, r"refs/heads/<branch>", id="bare-branch"),
        pytest.param({"ref": "refs/heads/"}, r"refs/heads/<branch>", id="empty-branch"),
        pytest.param({"ref": "refs/heads/main", "sha": "xyz"}, "7 to 40", id="bad-sha"),
    ],
)
def test_nightly_refuses_what_is_not_a_scheduled_branch_build(
    kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(BrokkrError, match=message):
        compute_tags(nightly=True, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "ref", ["refs/heads/nightly", "refs/tags/nightly"], ids=["branch", "git-tag"]
)
@pytest.mark.parametrize("commit_tag", [True, False], ids=["seed", "today"])
def test_a_branch_or_git_tag_named_nightly_is_refused(ref: str, commit_tag: bool) -> None:
    # Under either policy the nightly tag belongs to the scheduled build alone.
    with pytest.raises(BrokkrError, match="nightly tag"):
        compute_tags(ref, sha=SHA, commit_tag=commit_tag)


@given(
    ref=st.builds("refs/{}/{}".format, st.sampled_from(["tags", "heads", "pull"]), st.text())
    | st.text(),
    sha=st.just(SHA) | st.just(""),
    commit_tag=st.booleans(),
)
def test_only_a_nightly_build_ever_gets_the_nightly_tag(
    ref: str, sha: str, commit_tag: bool
) -> None:
    try:
        tags = compute_tags(ref, sha=sha, commit_tag=commit_tag)
    except BrokkrError:
        return
    assert "nightly" not in [t.name for t in tags]
    if not commit_tag:
        assert not any(t.name.endswith(f"-sha-{SHA[:7]}") for t in tags)
