"""Image tags from a git ref: the rules of SPEC "Tags" as pure functions.

This module decides which tags an image gets; it never talks to an engine or a
registry. ``compute_tags`` is what ``dagger call tags`` prints and what
``publish`` pushes, in the same order.

| trigger                         | tags (in order)                          | immutable          |
|---------------------------------|------------------------------------------|--------------------|
| ``refs/tags/v1.2.3``            | ``1.2.3``, ``1.2``, ``1``, ``latest``    | ``1.2.3`` only     |
| ``refs/tags/v1.2.3-rc.1``       | ``1.2.3-rc.1``                           | yes                |
| ``refs/tags/<not semver>``      | the sanitized tag name                   | yes                |
| ``refs/heads/<branch>`` + sha   | ``<branch>``, ``<branch>-sha-<7 hex>``   | the sha tag only   |
| ``refs/pull/<N>/merge|head``    | ``pr-N``                                 | no                 |
| a branch, ``nightly=True``      | ``nightly``                              | no                 |

Two policies, both Brokkr's (docs/tags.md):

- **the seed's** (the default): the table above; every branch push also gets
  the immutable per-commit tag ``<branch>-sha-<7 hex>``.
- **today's** (Brokkr v0.9.1, ``docs/src/reference/container-images.md``):
  ``commit_tag=False`` drops the per-commit tag (a branch push gets
  ``<branch>`` alone, so it needs no sha), and the scheduled nightly build
  publishes with ``nightly=True``.

``nightly=True`` gives the one moving tag ``nightly`` and nothing else: never a
release's tags (a ``refs/tags/...`` ref or a pull request is refused), never the
branch's own tags (the branch's push workflow owns those; two workflows must
not push the same tag), and no per-commit tag (a night without new commits
rebuilds the same commit, which an immutable tag would refuse).

Order: as the SPEC's table lists them. For a release the immutable version
leads and the moving tags follow from the narrowest (``1.2``) to the broadest
(``latest``); a branch gets ``<branch>`` before ``<branch>-sha-<7 hex>``.
``publish`` pushes the immutable tag first whatever this order is
(``ci.publishing.plan.pinned_first``), so the tag that must never change is written
before any pointer moves.

Moving tags never move backwards. Given the versions already published
(``released``), a stable release takes ``M.m`` only if it is at least every
stable release of that minor line, ``M`` only if it is at least every stable
release of that major line, and ``latest`` only if it is at least every stable
release. Pre-releases in ``released`` never block. Re-publishing a version that
is itself in ``released`` gets its moving tags again, so a re-run is idempotent.

Build metadata (``v1.2.3+fork.1``) is dropped from the tag (``1.2.3``), as
docker/metadata-action's ``{{version}}`` does: OCI tags cannot hold ``+``, and
semver ignores build metadata when ordering versions. Two builds of one version
therefore share the immutable tag, and publishing refuses the second one.

A tag name that would land in the namespace of release tags (``latest``,
``1``, ``1.2``, a full version such as ``1.2.3``, ``pr-7``, ``x-sha-1234567``
or ``nightly``) is refused when it comes from a branch or a non-semver git tag: pushing it would
overwrite a release's tag or a moving pointer.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

import semver

from ci.errors import BrokkrError

__all__ = [
    "ACCEPTED_REFS",
    "LATEST",
    "MAX_TAG_LENGTH",
    "NIGHTLY",
    "OCI_TAG",
    "SHORT_SHA_LENGTH",
    "Tag",
    "compute_tags",
    "released_versions",
    "sanitize_tag",
    "validate_sha",
]

OCI_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}")
"""The OCI distribution spec's tag grammar. Use it with ``fullmatch``."""

MAX_TAG_LENGTH = 128
"""The longest tag a registry accepts."""

SHORT_SHA_LENGTH = 7
"""How many hex digits of the commit go into a ``<branch>-sha-…`` tag."""

LATEST = "latest"
"""The moving tag of the highest stable release."""

NIGHTLY = "nightly"
"""The moving tag of the scheduled (nightly) build, Brokkr's policy since v0.9."""

ACCEPTED_REFS = (
    "refs/tags/<tag>, refs/heads/<branch>, refs/pull/<N>/merge, refs/pull/<N>/head, "
    "or an empty ref with --pr N"
)
"""The ref forms ``compute_tags`` understands, as error messages name them."""

_SHA_INFIX = "-sha-"
_SHA_SUFFIX_LENGTH = len(_SHA_INFIX) + SHORT_SHA_LENGTH
_INVALID_RUN = re.compile(r"[^A-Za-z0-9._-]+")
_SEPARATORS = ".-"
_SHA = re.compile(r"[0-9A-Fa-f]{7,40}")
_PULL_REF = re.compile(r"refs/pull/(?P<number>[1-9][0-9]*)/(?:merge|head)")
_MOVING_VERSION = re.compile(r"[0-9]+(?:\.[0-9]+)?")
_PR_TAG = re.compile(r"pr-[0-9]+")
_SHA_TAG = re.compile(r".*-sha-[0-9a-f]{7}")
_SHOWN_CHARS = 80


@dataclass(frozen=True, slots=True)
class Tag:
    """One image tag and whether it may ever point at a different image.

    ``immutable`` tags (a release's full version, a pre-release, a non-semver
    git tag, ``<branch>-sha-<7 hex>``) name exactly one build; a publisher must
    never overwrite them with a different digest. Moving tags (``1.2``, ``1``,
    ``latest``, ``<branch>``, ``pr-N``) are expected to be re-pointed.
    """

    name: str
    immutable: bool

    def __post_init__(self) -> None:
        """Refuse a name outside the OCI tag grammar (a bug in this module)."""
        if not OCI_TAG.fullmatch(self.name):
            raise ValueError(f"{self.name!r} is not a valid OCI tag")

    def __str__(self) -> str:
        """The tag name, as a registry sees it."""
        return self.name


def compute_tags(
    ref: str = "",
    *,
    sha: str = "",
    pr: int | None = None,
    released: Iterable[str] = (),
    nightly: bool = False,
    commit_tag: bool = True,
) -> list[Tag]:
    """Compute the tags of an image built from ``ref``, most specific first.

    Args:
        ref: The git ref that triggered the build, as ``$GITHUB_REF`` gives it:
            ``refs/tags/<tag>``, ``refs/heads/<branch>`` or
            ``refs/pull/<N>/merge`` (or ``/head``). May be empty when ``pr``
            is given.
        sha: The commit, 7 to 40 hex digits. Required for a branch push while
            ``commit_tag`` is on (it makes the ``<branch>-sha-<7 hex>`` tag);
            checked but unused otherwise.
        pr: A pull request number (at least 1). With an empty ref it yields
            ``pr-N``; with a ``refs/pull/M/...`` ref it must equal M.
        released: Versions already published (``v1.2.0``, ``2.0.0``,
            ``1.3.0-rc.1``, ``1.2.3_build.5``), e.g. from
            ``released_versions(<registry tag list>)``. They keep moving tags
            from going backwards.
        nightly: A scheduled (nightly) build: the only tag is ``nightly``
            (moving). The ref must be a branch or empty; a tag ref, a pull
            request ref or ``pr`` is refused.
        commit_tag: Give a branch push its immutable ``<branch>-sha-<7 hex>``
            tag (the seed's policy, the default). ``False`` follows Brokkr's
            policy since v0.9: the branch tag alone.

    Returns:
        The tags, the immutable one first, then moving tags from narrowest to
        broadest. The same inputs always give the same list, whatever the
        order of ``released``.

    Raises:
        BrokkrError: The ref, sha, pr or a released entry is malformed, a branch
            push has no sha (with ``commit_tag``), the name would collide with
            a release tag, or a nightly build names a git tag or pull request.
            The message names the accepted forms.
    """
    commit = validate_sha(sha) if sha else ""
    number = _validate_pr(pr)
    published = _parse_released(released)

    if nightly:
        _check_nightly_ref(ref, number)
        return [Tag(NIGHTLY, immutable=False)]

    if not ref:
        if number is None:
            raise BrokkrError(f"Nothing to tag: give a ref ({ACCEPTED_REFS}).")
        return [Tag(f"pr-{number}", immutable=False)]

    if ref.startswith("refs/pull/"):
        match = _PULL_REF.fullmatch(ref)
        if match is None:
            raise BrokkrError(
                f"Pull request ref {_show(ref)} is malformed: expected refs/pull/<N>/merge "
                f"or refs/pull/<N>/head with N a number from 1 (accepted refs: {ACCEPTED_REFS})."
            )
        ref_number = int(match["number"])
        if number is not None and number != ref_number:
            raise BrokkrError(
                f"--pr {number} contradicts ref {_show(ref)} (pull request {ref_number}); "
                "give one of them, or the same number in both."
            )
        return [Tag(f"pr-{ref_number}", immutable=False)]

    if number is not None:
        raise BrokkrError(
            f"--pr {number} cannot be combined with ref {_show(ref)}: a pull request "
            "build takes an empty ref or refs/pull/<N>/merge."
        )

    if ref.startswith("refs/tags/"):
        name = ref.removeprefix("refs/tags/")
        if not name:
            raise BrokkrError(f"Ref {_show(ref)} names no tag (accepted refs: {ACCEPTED_REFS}).")
        return _release_tags(name, published)

    if ref.startswith("refs/heads/"):
        branch = ref.removeprefix("refs/heads/")
        if not branch:
            raise BrokkrError(f"Ref {_show(ref)} names no branch (accepted refs: {ACCEPTED_REFS}).")
        if not commit_tag:
            return _branch_tags(branch, "")
        if not commit:
            raise BrokkrError(
                f"A branch push ({_show(ref)}) needs --sha, the commit it built "
                "(7 to 40 hex digits, e.g. $GITHUB_SHA), for its <branch>-sha-<7 hex> tag "
                "(or --no-commit-tag, which publishes the branch tag alone)."
            )
        return _branch_tags(branch, commit)

    raise BrokkrError(f"Ref {_show(ref)} is not understood; accepted refs: {ACCEPTED_REFS}.")


def sanitize_tag(name: str, *, max_length: int = MAX_TAG_LENGTH) -> str:
    """Turn ``name`` into a valid OCI tag (``[A-Za-z0-9_][A-Za-z0-9._-]{0,127}``).

    Each run of characters outside ``[A-Za-z0-9._-]`` becomes one ``-``
    (``feature/foo`` -> ``feature-foo``, ``my/feature#1245`` ->
    ``my-feature-1245``), leading ``.`` and ``-`` are dropped, and a name longer
    than ``max_length`` is cut there, dropping any ``.`` or ``-`` left at the
    cut. Case is kept. A name that already is a valid tag comes back unchanged.

    Raises:
        BrokkrError: ``name`` has no letter, digit or ``_`` to make a tag of.
        ValueError: ``max_length`` is not between 1 and 128.
    """
    if not 1 <= max_length <= MAX_TAG_LENGTH:
        raise ValueError(f"max_length must be between 1 and {MAX_TAG_LENGTH}, not {max_length}")
    cleaned = _INVALID_RUN.sub("-", name).lstrip(_SEPARATORS)
    if not cleaned:
        raise BrokkrError(
            f"{_show(name)} has no character usable in an image tag "
            "(letters, digits and _ ; tags match [A-Za-z0-9_][A-Za-z0-9._-]{0,127})."
        )
    if len(cleaned) > max_length:
        cleaned = cleaned[:max_length].rstrip(_SEPARATORS)
    return cleaned


def validate_sha(sha: str) -> str:
    """Check a git commit id and return it in lowercase.

    Accepts 7 to 40 hexadecimal digits, e.g. ``$GITHUB_SHA``.

    Raises:
        BrokkrError: ``sha`` is anything else.
    """
    if not _SHA.fullmatch(sha):
        raise BrokkrError(
            f"Sha {_show(sha)} is not a git commit id: expected 7 to 40 hexadecimal "
            "digits, e.g. the value of $GITHUB_SHA."
        )
    return sha.lower()


def released_versions(tags: Iterable[str]) -> list[str]:
    """Keep the tags of a registry listing that name a released version.

    A tag counts when it is a full semver version, with or without a leading
    ``v`` (``1.2.3``, ``v2.0.0``, ``1.3.0-rc.1``, ``1.2.3_build.5`` where ``_``
    stands for semver's ``+``). Moving tags (``1.2``, ``1``, ``latest``), branch,
    sha and pr tags are dropped. The result is deduplicated and sorted by
    version precedence (ties by name), ready to pass as ``released``.
    """
    found: dict[str, semver.Version] = {}
    for tag in tags:
        version = _parse_published(tag)
        if version is not None:
            found.setdefault(tag, version)
    return sorted(found, key=lambda tag: (found[tag], tag))


def _release_tags(name: str, published: list[semver.Version]) -> list[Tag]:
    """Tags for a pushed git tag: a version with its moving tags, or the name alone."""
    version = _parse_version(name.removeprefix("v"))
    if version is None:
        tag = sanitize_tag(name)
        _refuse_release_namespace(tag, source=f"git tag {_show(name)}")
        return [Tag(tag, immutable=True)]

    full = str(version.replace(build=None))
    if len(full) > MAX_TAG_LENGTH:
        raise BrokkrError(
            f"Version {_show(name)} is {len(full)} characters long; an image tag holds "
            f"at most {MAX_TAG_LENGTH}."
        )
    tags = [Tag(full, immutable=True)]
    if version.prerelease is not None:
        return tags

    stable = [r for r in published if r.prerelease is None]
    line = [r for r in stable if r.major == version.major]
    minor_line = [r for r in line if r.minor == version.minor]
    # semver.Version ignores build metadata when comparing, as semver requires.
    if all(version >= r for r in minor_line):
        tags.append(Tag(f"{version.major}.{version.minor}", immutable=False))
    if all(version >= r for r in line):
        tags.append(Tag(f"{version.major}", immutable=False))
    if all(version >= r for r in stable):
        tags.append(Tag(LATEST, immutable=False))
    return tags


def _branch_tags(branch: str, commit: str) -> list[Tag]:
    """``<branch>`` (moving) and, given a commit, ``<branch>-sha-<7 hex>`` (immutable).

    The branch tag is cut to leave room for the sha suffix whether or not the
    commit tag is made, so one branch has one tag under either policy.
    """
    base = sanitize_tag(branch, max_length=MAX_TAG_LENGTH - _SHA_SUFFIX_LENGTH)
    _refuse_release_namespace(base, source=f"branch {_show(branch)}")
    tags = [Tag(base, immutable=False)]
    if commit:
        tags.append(Tag(f"{base}{_SHA_INFIX}{commit[:SHORT_SHA_LENGTH]}", immutable=True))
    return tags


def _check_nightly_ref(ref: str, number: int | None) -> None:
    """A nightly build comes from a branch (or no ref): never a release or a pull request."""
    if number is not None or ref.startswith("refs/pull/"):
        raise BrokkrError(
            "--nightly is the scheduled build of a branch; a pull request build "
            f"({_show(ref) if ref else f'--pr {number}'}) gets pr-N: drop --nightly or the "
            "pull request."
        )
    if ref.startswith("refs/tags/"):
        raise BrokkrError(
            f"--nightly never tags a release: ref {_show(ref)} is a git tag, which gets "
            "its version tags. Run the nightly publish on a branch (refs/heads/main)."
        )
    if ref and (not ref.startswith("refs/heads/") or ref == "refs/heads/"):
        raise BrokkrError(
            f"--nightly takes a branch ref (refs/heads/<branch>) or none; got {_show(ref)}."
        )


def _refuse_release_namespace(tag: str, *, source: str) -> None:
    """Refuse a branch or plain git tag whose tag would overwrite a release's tags."""
    if tag == LATEST or _MOVING_VERSION.fullmatch(tag):
        clash = "a moving release tag"
    elif _parse_version(tag.replace("_", "+")) is not None:
        clash = "a release's version tag"
    elif _PR_TAG.fullmatch(tag):
        clash = "a pull request's tag"
    elif _SHA_TAG.fullmatch(tag):
        clash = "a branch's <branch>-sha-<7 hex> tag"
    elif tag == NIGHTLY:
        clash = "the scheduled build's nightly tag"
    else:
        return
    raise BrokkrError(
        f"The {source} would be published as {tag!r}, which collides with {clash}. "
        "Release with a full semver git tag such as v1.2.3, and keep branch names out "
        "of the forms latest, nightly, N, N.N, N.N.N, pr-N and <name>-sha-<7 hex>."
    )


def _parse_released(released: Iterable[str]) -> list[semver.Version]:
    """Parse every ``released`` entry; one that is not a version is an error."""
    if isinstance(released, str):
        raise TypeError("released must be a collection of version strings, not one string")
    versions = []
    for entry in released:
        version = _parse_published(entry)
        if version is None:
            raise BrokkrError(
                f"Released version {_show(entry)} is not a full semver version; give "
                "versions such as v1.2.0, 2.0.0 or 1.3.0-rc.1 (filter a registry's tag "
                "list with released_versions)."
            )
        versions.append(version)
    return versions


def _parse_published(text: str) -> semver.Version | None:
    """A version as published: optional ``v``, ``_`` standing for ``+``."""
    return _parse_version(text.removeprefix("v").replace("_", "+"))


def _parse_version(text: str) -> semver.Version | None:
    """A strict semver 2.0.0 version, or None."""
    try:
        return semver.Version.parse(text)
    except ValueError:
        return None


def _validate_pr(pr: int | None) -> int | None:
    """Check a pull request number: an int from 1, or None."""
    if pr is None:
        return None
    if isinstance(pr, bool) or not isinstance(pr, int) or pr < 1:
        raise BrokkrError(f"--pr must be a pull request number from 1, not {pr!r}.")
    return pr


def _show(text: str) -> str:
    """Quote user input for an error message, shortened if very long."""
    if len(text) > _SHOWN_CHARS:
        text = text[: _SHOWN_CHARS - 3] + "..."
    return repr(text)
