"""The plan of a publish: what each repository holds, which tags this run pushes.

Nothing is built or pushed here; an immutable tag that already exists stops
the run (`refuse_overwrites`) unless `--force`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from ci.concurrency import run_all
from ci.errors import BrokkrError
from ci.publishing.request import PublishRequest
from ci.registry.client import RegistryClient
from ci.rules.components import Component, ComponentSpec, component_spec
from ci.rules.labels import REVISION_LABEL
from ci.rules.reference import ImageReference
from ci.rules.tags import Tag, compute_tags, released_versions
from ci.supply_chain.sbom import AttachedSbom


@dataclass
class Target:
    """Where one component goes, and what its repository already holds."""

    spec: ComponentSpec
    repository: ImageReference
    tags: list[Tag]
    existing: frozenset[str]
    revisions: dict[str, str] = field(default_factory=dict)
    """The commit each existing immutable tag of this run was published from, where known."""
    pushed: list[str] = field(default_factory=list)
    digest: str = ""
    """The pushed index digest, once read back."""
    platform_digests: dict[str, str] = field(default_factory=dict)
    """Platform (`linux/amd64`) -> its manifest digest in the index, once read back."""
    sboms: dict[str, AttachedSbom] = field(default_factory=dict)
    """Platform -> its attached SBOM, once attached (in the order they were read)."""
    signatures: dict[str, str] = field(default_factory=dict)
    """`index` or platform -> the `sha256-<hex>.sig` tag its signature is stored under."""

    def address(self, tag: str) -> str:
        """`{repository}:{tag}`."""
        return f"{self.repository.name}:{tag}"

    @property
    def conflicts(self) -> list[str]:
        """Immutable tags of this run that the repository already has."""
        return [t.name for t in self.tags if t.immutable and t.name in self.existing]


async def plan(request: PublishRequest, client: RegistryClient) -> list[Target]:
    """Read each repository's tags and compute the tags of this run (concurrently).

    Existing immutable tags of this run are looked at too: the commit they were
    published from goes into the refusal message.
    """
    if not request.components:
        # A bug, not a user's mistake: publish settles them first (`with_components`).
        raise ValueError("plan needs the request's components settled (images.with_components)")
    targets: dict[Component, Target] = {}

    async def one(component: Component) -> None:
        repository = request.registry.repository(component)
        existing = await client.list_tags(repository, missing_ok=True)
        tags = compute_tags(
            request.ref,
            sha=request.sha,
            pr=request.pr,
            released=released_versions(existing),
            nightly=request.nightly,
            commit_tag=request.commit_tag,
        )
        target = Target(component_spec(component), repository, tags, frozenset(existing))
        for name in target.conflicts:
            labels = await client.config_labels(repository.with_tag(name))
            if revision := labels.get(REVISION_LABEL):
                target.revisions[name] = revision
        targets[component] = target

    host = request.registry.registry
    # One deadline for all of the plan's reads (the client's Limits.deadline).
    with client.operation(host, f"reading the tags of {request.registry} to plan the publish"):
        await run_all([lambda c=c: one(c) for c in request.components])
    return [targets[c] for c in request.components]


def refuse_overwrites(request: PublishRequest, targets: Sequence[Target]) -> None:
    """Stop before anything is built or pushed if an immutable tag already exists."""
    conflicts = [
        f"{t.address(tag)} ({provenance(request.sha, t.revisions.get(tag))})"
        for t in targets
        for tag in t.conflicts
    ]
    if conflicts and not request.force:
        msg = (
            "refusing to overwrite immutable tags that already exist: "
            + ", ".join(conflicts)
            + ". Nothing was built or pushed. Release a new version, or pass --force "
            "if replacing them is really intended."
        )
        raise BrokkrError(msg)


def provenance(sha: str, revision: str | None) -> str:
    """Where an existing immutable tag came from, for the refusal and the dry run."""
    if revision is None:
        return "published from an unknown commit"
    if revision == sha:
        return f"already published from this commit {revision[:7]}"
    return f"published from commit {revision[:7]}"


def pinned_first(tags: Sequence[Tag]) -> list[Tag]:
    """The tags in push order: the immutable tag (the most specific) before moving ones."""
    return sorted(tags, key=lambda t: not t.immutable)
