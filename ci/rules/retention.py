"""What `prune` may remove from a repository: the protection rule, as a pure function.

The input is what the registry itself says (`RepositoryState`): every tag and
the digest it resolves to, the children of every index that was read, and the
referrers of a digest where the registry has a referrers API. Supply-chain tags
hang off the digest whose hex they carry: `sha256-<hex>` (an index listing the
referrers of `sha256:<hex>`, the referrers tag schema) and `sha256-<hex>.sig`
(cosign's signatures; any `sha256-<hex>.<suffix>` counts the same).

`plan` is given the tags to remove and why. Everything reachable from any
other tag is **protected**: its digest, the children of an index (platform
manifests, attestations), and, transitively, its supply-chain tags and their
content and its referrers. What is reachable from the tags to remove, minus
everything protected, is removed: each such manifest by digest, its
supply-chain tags with it. A tag to remove whose digest is protected (it shares
its image with a kept tag) goes alone where the registry can delete a tag
without its manifest; otherwise it stays, and the plan says so.

Removal order is the reverse of reachability (signatures and referrers, then
platform manifests, then the tagged manifest), so a run that stops half-way
leaves the tag in place and a second run finishes the job.

Also here: which tags are a branch's per-commit tags, the key of a
dependency-cache tag (issue 18's `deps-<platform>-<key>` in
`brokkr-build-cache`, parsed by `ci.rules.cache_key`), and which of them a
`--keep K` keeps (`keep_newest`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ci.errors import BrokkrError
from ci.rules.cache_key import CACHE_REPOSITORY, parse_cache_tag

__all__ = [
    "CACHE_REPOSITORY",
    "Kept",
    "Plan",
    "Removal",
    "RepositoryState",
    "Stamped",
    "branch_sha_tags",
    "cache_key_of",
    "is_supply_chain_tag",
    "keep_newest",
    "parse_time",
    "plan",
    "subject_of_tag",
]

_SUPPLY_CHAIN_TAG = re.compile(
    r"(?P<alg>sha256|sha512)-(?P<hex>[0-9a-f]{64}|[0-9a-f]{128})(?:\..+)?"
)
_SHA_SUFFIX = re.compile(r"-sha-[0-9a-f]{7}")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# How deep in the removal a manifest sits: removed deepest first.
_TAGGED, _CHILD, _SUPPLY_CHAIN = 0, 1, 2


def subject_of_tag(tag: str) -> str | None:
    """`sha256-<hex>` or `sha256-<hex>.sig` → `sha256:<hex>`; None for any other tag."""
    match = _SUPPLY_CHAIN_TAG.fullmatch(tag)
    if match is None:
        return None
    hex_part = match["hex"]
    if (match["alg"] == "sha256") != (len(hex_part) == 64):
        return None
    return f"{match['alg']}:{hex_part}"


def is_supply_chain_tag(tag: str) -> bool:
    """Whether `tag` stores referrers or signatures of a digest (`sha256-<hex>[.<x>]`)."""
    return subject_of_tag(tag) is not None


def branch_sha_tags(tags: Iterable[str], branch_tag: str) -> list[str]:
    """The per-commit tags of a branch: `<branch_tag>-sha-<7 hex>` (sanitized branch)."""
    prefix = f"{branch_tag}-sha-"
    return [t for t in tags if t.startswith(prefix) and _SHA_SUFFIX.fullmatch(t[len(branch_tag) :])]


def cache_key_of(tag: str) -> str | None:
    """The key of a dependency-cache tag `deps-<os>-<arch>[-<variant>]-<64 hex>`, else None
    (`cache_key.parse_cache_tag`, the one parser of those tags)."""
    parsed = parse_cache_tag(tag)
    return parsed[1] if parsed else None


@dataclass(frozen=True)
class Stamped:
    """A tag (or a cache key) and the time it is ordered by (RFC 3339), if known."""

    name: str
    time: str | None


def parse_time(text: str | None) -> datetime | None:
    """An RFC 3339 time as an aware datetime; None for none, an unreadable one, or the
    epoch (publish's default `--created`, which says nothing about age)."""
    if not text:
        return None
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        return None
    if when.tzinfo is None:
        return None
    return None if when == _EPOCH else when


def keep_newest(items: Sequence[Stamped], keep: int) -> tuple[list[str], list[str], list[str]]:
    """(kept, removed, undated): the `keep` newest by time stay, older ones go.

    Times are compared as instants (offsets count). An item as new as the
    oldest kept one is kept too (a tie is no evidence of age), so more than
    `keep` stay only on a tie. An item without a usable time (`parse_time`) is
    never removed: it is `undated` and kept besides the `keep` newest.
    """
    if keep < 0:
        raise BrokkrError(f"--keep must be 0 or more, got {keep}")
    timed = [(parse_time(i.time), i.name) for i in items]
    dated = sorted(((t, n) for t, n in timed if t is not None), reverse=True)
    undated = sorted(n for t, n in timed if t is None)
    kept = [n for _, n in dated[:keep]]
    oldest_kept = dated[keep - 1][0] if 0 < keep <= len(dated) else None
    removed = []
    for when, name in dated[keep:]:
        (kept if when == oldest_kept else removed).append(name)
    return kept, removed, undated


@dataclass(frozen=True)
class RepositoryState:
    """What the registry says a repository holds.

    - `tags`: every tag → the digest it resolves to;
    - `children`: digest of an index that was read → the digests it lists;
    - `referrers`: digest → its referrers' digests (a referrers API's answer).
    """

    tags: Mapping[str, str]
    children: Mapping[str, Sequence[str]] = field(default_factory=dict)
    referrers: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def supply_chain_tags(self, digest: str) -> list[str]:
        """The tags that store referrers or signatures of `digest`."""
        return sorted(t for t in self.tags if subject_of_tag(t) == digest)

    def reach(self, roots: Iterable[str]) -> dict[str, int]:
        """Every digest reachable from `roots`, each with how it was reached (depth class)."""
        found: dict[str, int] = {}
        stack = [(d, _TAGGED) for d in roots]
        while stack:
            digest, kind = stack.pop()
            if digest in found and found[digest] <= kind:
                continue
            found[digest] = kind
            for child in self.children.get(digest, ()):
                stack.append((child, max(kind, _CHILD)))
            for referrer in self.referrers.get(digest, ()):
                stack.append((referrer, _SUPPLY_CHAIN))
            for tag in self.supply_chain_tags(digest):
                stack.append((self.tags[tag], _SUPPLY_CHAIN))
        return found


@dataclass(frozen=True)
class Removal:
    """One thing to remove: a manifest by digest (with the tags that go with it), or a tag."""

    digest: str
    tags: tuple[str, ...]
    reason: str
    tag_only: bool = False
    """Only the tag (`tags[0]`) goes; the manifest stays (a kept tag shares it)."""


@dataclass(frozen=True)
class Kept:
    """A tag that was asked to go but stays, and why."""

    tag: str
    digest: str
    reason: str


@dataclass(frozen=True)
class Plan:
    """What to remove, in order (deepest first), and what stays although asked to go."""

    removals: tuple[Removal, ...]
    kept: tuple[Kept, ...]
    protected: frozenset[str]
    """Every digest reachable from a tag that stays: nothing here is ever removed."""


def plan(
    state: RepositoryState,
    remove: Mapping[str, str],
    *,
    can_delete_tags: bool,
) -> Plan:
    """Decide what goes when the tags of `remove` (tag → why) go; see the module docstring.

    A tag of `remove` that the repository does not have is ignored. A
    supply-chain tag in `remove` is refused (they go with their subject).
    """
    for tag in remove:
        if is_supply_chain_tag(tag):
            raise BrokkrError(f"{tag} stores signatures or referrers; it goes with its image")
    doomed_tags = {t: why for t, why in remove.items() if t in state.tags}
    staying_roots = [
        d for t, d in state.tags.items() if t not in doomed_tags and not is_supply_chain_tag(t)
    ]
    protected = state.reach(staying_roots)
    reasons: dict[str, str] = {}
    for tag, why in doomed_tags.items():
        reasons.setdefault(state.tags[tag], why)
    candidates = state.reach(state.tags[t] for t in doomed_tags)
    removable = {d: kind for d, kind in candidates.items() if d not in protected}
    sharing = _sharing_tags(state, protected, doomed_tags)

    removals: list[Removal] = []
    kept: list[Kept] = []
    # Tags asked to go whose image stays.
    for tag in sorted(doomed_tags):
        digest = state.tags[tag]
        if digest in removable:
            continue
        others = ", ".join(sharing.get(digest, [])) or "a kept image (as its part)"
        if can_delete_tags:
            removals.append(
                Removal(digest, (tag,), f"{doomed_tags[tag]}; image kept: {others}", True)
            )
        else:
            kept.append(
                Kept(
                    tag,
                    digest,
                    f"{doomed_tags[tag]}, but its image is also {others} and this registry "
                    "deletes images, not single tags",
                )
            )
    # Supply-chain tags of a removed digest whose own content is protected.
    for digest in removable:
        for tag in state.supply_chain_tags(digest):
            if state.tags[tag] in removable:
                continue
            why = f"stores signatures/referrers of removed {digest}"
            if can_delete_tags:
                removals.append(Removal(state.tags[tag], (tag,), why, True))
            else:
                kept.append(Kept(tag, state.tags[tag], why + ", but its content is kept elsewhere"))
    # Manifests, deepest first; each carries every tag that resolves to it.
    tags_of: dict[str, list[str]] = {}
    for tag, digest in state.tags.items():
        tags_of.setdefault(digest, []).append(tag)
    for digest, kind in sorted(removable.items(), key=lambda item: (-item[1], item[0])):
        why = reasons.get(digest) or _why(state, digest, kind, candidates, reasons)
        removals.append(Removal(digest, tuple(sorted(tags_of.get(digest, []))), why))
    return Plan(tuple(removals), tuple(kept), frozenset(protected))


def _sharing_tags(
    state: RepositoryState, protected: Mapping[str, int], doomed: Mapping[str, str]
) -> dict[str, list[str]]:
    """Protected digest → the staying tags that name it."""
    out: dict[str, list[str]] = {}
    for tag, digest in sorted(state.tags.items()):
        if digest in protected and tag not in doomed and not is_supply_chain_tag(tag):
            out.setdefault(digest, []).append(tag)
    return out


def _why(
    state: RepositoryState,
    digest: str,
    kind: int,
    candidates: Mapping[str, int],
    reasons: Mapping[str, str],
) -> str:
    """Why a manifest reached only through removed tags goes (its parent's reason)."""
    for parent in candidates:
        if digest in state.children.get(parent, ()):
            what = "platform manifest" if kind == _CHILD else "listed referrer"
            return f"{what} of {parent}, which goes" + (
                f" ({reasons[parent]})" if parent in reasons else ""
            )
        if digest in state.referrers.get(parent, ()):
            return f"referrer of {parent}, which goes"
        for tag in state.supply_chain_tags(parent):
            if state.tags[tag] == digest:
                return f"signatures/referrers of {parent}, which goes"
    return "reachable only from removed tags"
