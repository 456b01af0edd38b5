"""`prune`: remove what pull requests, commits and old dependency-cache keys leave behind.

One run prunes one kind of thing:

- `--pr N`: the tag `pr-N` of every component's repository;
- `--branch B --keep K`: all but the K newest `B-sha-<7 hex>` tags of every
  component's repository. Newest by the image's
  `org.opencontainers.image.created` label — the commit time publish writes
  (`--created`, `git log -1 --format=%cI` in the workflow), so the order is the
  order of the commits, not of the pushes, and a re-run of an old commit does
  not make its image "new" — else by the config's `created` field. An image
  with neither is never removed (kept and reported: age unknown is no proof);
- `--dependency-cache --keep K`: all but the K most recent keys of the
  dependency cache (`{registry}/brokkr-build-cache`, tags
  `deps-<platform>-<key>`, one tag per key, since the platform is part of
  the key); a key's time is its image's created label, the `--created` of the
  publish that saved it (same fields as above); no cache repository, nothing
  to do.

For each repository the registry is read first (`read_state`: every tag, the
manifest it resolves to, the children of every index, the referrers of what
would go where the registry has a referrers API); `ci.rules.retention.plan`
decides, protecting everything any other tag reaches; then the removals run
deepest first (signatures and SBOMs, platform manifests, the tagged manifest).
On GHCR (or with `--deletion github`) through GitHub's packages API, elsewhere
through OCI `DELETE`. A version the GitHub listing describes differently from
the registry (another tag on it) is kept and reported: the two sources must
agree before anything is deleted.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import dagger

from ci.access import RegistryAccess
from ci.concurrency import run_all
from ci.errors import BrokkrError
from ci.registry.client import Manifest, RegistryClient
from ci.registry.deletion import Deleted, delete_manifest
from ci.registry.github_packages import (
    DEFAULT_API,
    GitHubPackages,
    PackageVersion,
    validate_api_url,
)
from ci.registry.text import clean
from ci.registry.transport import HttpSession
from ci.rules import retention as _retention
from ci.rules.components import Component
from ci.rules.namespace import Namespace
from ci.rules.reference import ImageReference, parse_repository
from ci.rules.tags import sanitize_tag

__all__ = ["Deletion", "PruneFormat", "PruneRequest", "prune"]

READ_CONCURRENCY = 8
"""Manifests read at once while reading a repository."""
CREATED_LABEL = "org.opencontainers.image.created"


@dagger.enum_type
class Deletion(enum.Enum):
    """How `prune` deletes."""

    AUTO = "auto"
    """GitHub's packages API for ghcr.io, OCI DELETE anywhere else."""

    OCI = "oci"
    """OCI `DELETE /v2/<name>/manifests/<digest>` (the registry must allow deletion)."""

    GITHUB = "github"
    """GitHub's packages API (GHCR; the owner is the first path part of the repository)."""


@dagger.enum_type
class PruneFormat(enum.Enum):
    """What `prune` prints."""

    TEXT = "text"
    """One line per removal or kept tag: what, why, and whether it was done."""

    JSON = "json"
    """One JSON array, one object per removal or kept tag: repository, action
    (`remove`, `remove-tag`, `keep`), digest, tags, reason, done (false with
    --dry-run and for `keep`)."""


@dataclass(frozen=True)
class PruneRequest:
    """A validated `prune` call."""

    registry: Namespace
    components: tuple[Component, ...]
    pr: int | None = None
    branch: str | None = None
    """The branch's tag (sanitized as publish sanitizes it)."""
    dependency_cache: bool = False
    keep: int = 0
    dry_run: bool = False
    output: PruneFormat = PruneFormat.TEXT
    deletion: Deletion = Deletion.AUTO
    github_api: str = DEFAULT_API

    @classmethod
    def create(
        cls,
        *,
        registry: Namespace,
        components: Sequence[Component] = (),
        pr: int | None = None,
        branch: str = "",
        dependency_cache: bool = False,
        keep: int | None = None,
        dry_run: bool = False,
        output: PruneFormat = PruneFormat.TEXT,
        deletion: Deletion = Deletion.AUTO,
        github_api: str = DEFAULT_API,
    ) -> PruneRequest:
        """Check every input; a `BrokkrError` names the first bad one."""
        kinds = [pr is not None, bool(branch), dependency_cache]
        if sum(kinds) != 1:
            raise BrokkrError(
                "prune needs exactly one of --pr N, --branch B --keep K, "
                "--dependency-cache --keep K"
            )
        if pr is not None and pr < 1:
            raise BrokkrError(f"--pr must be a pull request number (1 or more), got {pr}")
        if pr is not None and keep is not None:
            raise BrokkrError("--keep goes with --branch or --dependency-cache, not --pr")
        if pr is None and keep is None:
            raise BrokkrError("--branch and --dependency-cache need --keep K (how many to keep)")
        if keep is not None and keep < 0:
            raise BrokkrError(f"--keep must be 0 or more, got {keep}")
        branch_tag = sanitize_tag(branch) if branch else None
        return cls(
            registry=registry,
            components=tuple(dict.fromkeys(components)) or tuple(Component),
            pr=pr,
            branch=branch_tag,
            dependency_cache=dependency_cache,
            keep=keep or 0,
            dry_run=dry_run,
            output=output,
            deletion=deletion,
            github_api=validate_api_url(github_api),
        )

    def repositories(self) -> list[ImageReference]:
        """The repositories this run prunes."""
        if self.dependency_cache:
            return [parse_repository(f"{self.registry}/{_retention.CACHE_REPOSITORY}")]
        return [self.registry.repository(c) for c in self.components]

    def uses_github(self, repository: ImageReference) -> bool:
        if self.deletion is Deletion.AUTO:
            return repository.host == "ghcr.io"
        return self.deletion is Deletion.GITHUB


@dataclass
class Outcome:
    """One line of the report."""

    repository: str
    action: str
    digest: str
    tags: tuple[str, ...]
    reason: str
    done: bool = False
    note: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "repository": self.repository,
            "action": self.action,
            "digest": self.digest,
            "tags": list(self.tags),
            "reason": self.reason,
            "done": self.done,
            "note": self.note,
        }

    def text(self, dry_run: bool) -> str:
        tags = f" ({', '.join(self.tags)})" if self.tags else ""
        if self.action == "keep":
            verb = "keeps"
        elif dry_run and self.action == "remove-tag":
            verb = "would remove (where the registry deletes a tag alone) tag"
        elif dry_run:
            verb = "would remove"
        elif self.done:
            verb = "removed tag" if self.action == "remove-tag" else "removed"
        else:
            verb = "not removed"
        target = (
            f"{self.repository}:{self.tags[0]}"
            if self.action != "remove"
            else (f"{self.repository}@{self.digest}")
        )
        extra = f" [{self.note}]" if self.note else ""
        return f"{verb} {target}{tags if self.action == 'remove' else ''}: {self.reason}{extra}"


@dataclass
class Report:
    """Everything one prune did or would do."""

    outcomes: list[Outcome] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def render(self, request: PruneRequest) -> str:
        if request.output is PruneFormat.JSON:
            return json.dumps([o.as_json() for o in self.outcomes], indent=2)
        lines = [o.text(request.dry_run) for o in self.outcomes]
        lines += [f"# {n}" for n in self.notes]
        if not self.outcomes:
            lines.insert(0, "nothing to prune")
        return "\n".join(lines)


# Reading ---------------------------------------------------------------------------


async def read_state(
    client: RegistryClient, repository: ImageReference, tags: Sequence[str], doomed: Sequence[str]
) -> _retention.RepositoryState:
    """Every tag's digest and every index's children, as the registry serves them.

    Referrers through the referrers API are asked for what `doomed` reaches
    only (a referrer has one subject, so nothing else can lead to them).
    """
    resolved: dict[str, Manifest] = {}

    async def one(tag: str) -> None:
        manifest = await client.fetch_manifest_or_none(repository.with_tag(tag))
        if manifest is not None:  # a tag gone meanwhile is no tag
            resolved[tag] = manifest

    await run_all([lambda t=t: one(t) for t in tags], limit=READ_CONCURRENCY)
    children = {m.digest: _children(m) for m in resolved.values() if m.is_index}
    state = _retention.RepositoryState({t: m.digest for t, m in resolved.items()}, children)
    reached = state.reach(state.tags[t] for t in doomed if t in state.tags)
    referrers: dict[str, list[str]] = {}
    for digest in sorted(reached):
        listed = await client.get_referrers(repository, digest)
        if listed is None:
            break  # no referrers API: the fallback tags are in `tags` already
        referrers[digest] = [str(d["digest"]) for d in listed if isinstance(d.get("digest"), str)]
    if referrers:
        state = _retention.RepositoryState(state.tags, children, referrers)
    return state


def _children(manifest: Manifest) -> list[str]:
    entries = manifest.document.get("manifests")
    if not isinstance(entries, list):
        return []
    return [
        e["digest"] for e in entries if isinstance(e, dict) and isinstance(e.get("digest"), str)
    ]


async def image_time(client: RegistryClient, ref: ImageReference) -> str | None:
    """The image's created label, else its config's `created` (first platform), whichever
    is first a usable time (`retention.parse_time`: not the 1970 default); or None."""
    try:
        manifest = await client.get_manifest(ref)
        if manifest.is_index:
            children = [
                e
                for e in manifest.document.get("manifests", [])
                if isinstance(e, dict)
                and (e.get("platform") or {}).get("architecture") not in (None, "unknown")
            ]
            if not children:
                return None
            manifest = await client.get_manifest(ref.with_digest(str(children[0]["digest"])))
        config = manifest.document.get("config") or {}
        blob = await client.get_blob(ref, str(config["digest"]), int(config["size"]))
        document = json.loads(blob)
    except (BrokkrError, KeyError, TypeError, ValueError, AttributeError):
        return None
    labels = (document.get("config") or {}).get("Labels") or {}
    for value in (labels.get(CREATED_LABEL), document.get("created")):
        if isinstance(value, str) and _retention.parse_time(value) is not None:
            return clean(value, 64)
    return None


async def doomed_tags(
    request: PruneRequest, client: RegistryClient, repository: ImageReference, tags: Sequence[str]
) -> tuple[dict[str, str], list[Outcome]]:
    """The tags this run asks to remove (tag → why), and the undated ones it keeps."""
    if request.pr is not None:
        tag = f"pr-{request.pr}"
        return ({tag: f"pull request {request.pr} closed"} if tag in tags else {}), []
    if request.branch is not None:
        names = _retention.branch_sha_tags(tags, request.branch)
        groups = {n: [n] for n in names}
        what = f"{request.branch}-sha-*"
    else:
        groups = {}
        for tag in tags:
            if (key := _retention.cache_key_of(tag)) is not None:
                groups.setdefault(key, []).append(tag)
        what = "dependency-cache keys"
    times: dict[str, str | None] = {}

    async def stamp(name: str) -> None:
        found = [await image_time(client, repository.with_tag(t)) for t in groups[name]]
        # A key's time is its newest platform's; any platform without one: undated.
        parsed = [(_retention.parse_time(t), t) for t in found]
        dated = [(when, t) for when, t in parsed if when is not None and t is not None]
        times[name] = max(dated)[1] if dated and len(dated) == len(found) else None

    await run_all([lambda n=n: stamp(n) for n in groups], limit=READ_CONCURRENCY)
    _, removed, undated = _retention.keep_newest(
        [_retention.Stamped(n, times[n]) for n in sorted(groups)], request.keep
    )
    doomed = {
        tag: f"older than the {request.keep} newest {what} ({times[name]})"
        for name in removed
        for tag in groups[name]
    }
    kept_undated = [
        Outcome(
            repository.name,
            "keep",
            "",
            (tag,),
            "no usable created label or config time (none, unreadable, or the 1970 default): "
            "age unknown",
        )
        for name in undated
        for tag in groups[name]
    ]
    return doomed, kept_undated


# Deleting --------------------------------------------------------------------------


async def _delete_oci(
    client: RegistryClient, repository: ImageReference, outcomes: list[Outcome]
) -> None:
    for outcome in outcomes:
        if outcome.action == "keep":
            continue
        reference = outcome.tags[0] if outcome.action == "remove-tag" else outcome.digest
        result = await delete_manifest(client, repository, reference)
        if result is Deleted.REFUSED and outcome.action == "remove-tag":
            outcome.action = "keep"
            outcome.reason += "; this registry does not delete a tag alone"
            continue
        if result is Deleted.REFUSED:
            raise BrokkrError(
                f"{repository.name} refuses manifest deletion (does it allow deletion? "
                "docker-registry needs storage.delete.enabled)"
            )
        outcome.done = True
        if result is Deleted.MISSING:
            outcome.note = "already gone"


async def _delete_github(
    packages: GitHubPackages, outcomes: list[Outcome], protected: frozenset[str]
) -> None:
    listed = {v.digest: v for v in await packages.versions()}
    for outcome in outcomes:
        if outcome.action != "remove":
            continue
        version: PackageVersion | None = listed.get(outcome.digest)
        if version is None:
            outcome.done = True
            outcome.note = "not in the package's version listing (already gone)"
            continue
        strangers = sorted(set(version.tags) - set(outcome.tags))
        if strangers or version.digest in protected:
            outcome.action = "keep"
            outcome.reason += (
                f"; GitHub lists it with tags the registry does not: {', '.join(strangers)}; "
                "not deleted while the two disagree"
            )
            continue
        deleted = await packages.delete(version)
        outcome.done = True
        if not deleted:
            outcome.note = "already gone"


def _github_names(repository: ImageReference) -> tuple[str, str]:
    owner, _, package = repository.repository.partition("/")
    if not package:
        raise BrokkrError(
            f"{repository.name}: GitHub packages need an owner and a name (ghcr.io/OWNER/NAME)"
        )
    return owner, package


async def prune_repository(
    request: PruneRequest,
    client: RegistryClient,
    repository: ImageReference,
    *,
    session: HttpSession,
    token: str,
    report: Report,
) -> None:
    """Plan, then (unless a dry run) remove, for one repository."""
    tags = await client.list_tags(repository, missing_ok=True)
    if not tags:
        report.notes.append(f"{repository.name}: no such repository or no tags; nothing to do")
        return
    doomed, kept_undated = await doomed_tags(request, client, repository, tags)
    report.outcomes += kept_undated
    if not doomed:
        return
    state = await read_state(client, repository, tags, sorted(doomed))
    github = request.uses_github(repository)
    plan = _retention.plan(state, doomed, can_delete_tags=not github)
    outcomes = [
        Outcome(
            repository.name,
            "remove-tag" if r.tag_only else "remove",
            r.digest,
            r.tags,
            r.reason,
        )
        for r in plan.removals
    ]
    outcomes += [Outcome(repository.name, "keep", k.digest, (k.tag,), k.reason) for k in plan.kept]
    for outcome in outcomes:  # the rule's promise, checked again before anything is deleted
        if outcome.action == "remove" and outcome.digest in plan.protected:
            raise BrokkrError(f"internal error: {outcome.digest} is protected")
    report.outcomes += outcomes
    if request.dry_run:
        return
    try:
        if github:
            owner, package = _github_names(repository)
            packages = GitHubPackages(
                session, api=request.github_api, token=token, owner=owner, package=package
            )
            await _delete_github(packages, outcomes, plan.protected)
        else:
            await _delete_oci(client, repository, outcomes)
    except BrokkrError as error:
        raise BrokkrError(f"{error}{_progress(outcomes)}") from None


def _progress(outcomes: Sequence[Outcome]) -> str:
    """` Removed: …. Not removed: ….` for an error in the middle of the removals."""
    done = [_name(o) for o in outcomes if o.done]
    left = [_name(o) for o in outcomes if not o.done and o.action != "keep"]
    text = f". Removed: {', '.join(done)}" if done else ". Nothing was removed"
    return text + (f". Not removed: {', '.join(left)}." if left else ".")


def _name(outcome: Outcome) -> str:
    tags = f" ({', '.join(outcome.tags)})" if outcome.tags else ""
    return f"{outcome.digest}{tags}"


async def prune(request: PruneRequest, access: RegistryAccess) -> str:
    """Run a prune over every repository of `request`; see the module docstring."""
    report = Report()
    credentials = access.credentials
    token = credentials.password if credentials is not None else ""
    github = [r.name for r in request.repositories() if request.uses_github(r)]
    if github and not token and not request.dry_run:
        raise BrokkrError(
            f"deleting from {github[0]} goes through GitHub's packages API, which needs a "
            "token: pass --username and --password (a token that may delete packages). "
            "Nothing was read or removed."
        )
    async with access.client() as client:
        session = HttpSession(
            attempts=4, backoff=0.5, max_delay=30.0, timeout=30.0, limits=client.limits
        )
        async with session:
            for repository in request.repositories():
                with client.operation(repository.registry, f"pruning {repository.name}"):
                    await prune_repository(
                        request, client, repository, session=session, token=token, report=report
                    )
    return report.render(request)
