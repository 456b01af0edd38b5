"""`promote`: give an already-published, tested image the release tags of a ref, unbuilt.

The image that passed the end-to-end tests (`main-sha-abc1234`) becomes the
release: the same index, byte for byte, is pushed under the tags
`compute_tags` gives the ref (`1.2.3`, and `1.2`, `1`, `latest` where they may
go), so its digest — and with it every platform manifest, SBOM referrer and
signature (all made per digest, signatures naming the repository, which does
not change) — stays what was tested.

Checks, all before the first push, for every component (publish's own
`plan` and `refuse_overwrites` decide the tags and refuse an immutable tag
that exists; they are reused, not copied):

- the ref is a git tag (`refs/tags/vX.Y.Z`); moving tags never go backwards
  (the registry's releases decide, as in publish);
- the source image's `org.opencontainers.image.revision` label is `--sha`
  (the same commit, compared in full): an image built from another commit is
  refused;
- an immutable tag that already exists is refused, unless it already names
  this very image (a re-run after a failure finishes the job).

Then each component's tags are pushed (the immutable one first) and read back
(publish's `verify`): every tag must resolve to the source's digest with every
platform. The output names the SBOMs and signatures the registry holds for
the promoted digests.

The version label: an image's config (and its labels) cannot change without
changing every digest. So a promoted image keeps the
`org.opencontainers.image.version` label of its first publish (for a `main`
push, `main-sha-<7 hex>`), while its tags say `1.2.3`. That is the trade-off:
the digest that was tested, signed and described by its SBOMs is the digest
released, at the price of a version label naming the commit's branch tag; the
revision label names the exact commit either way. Whoever needs the label to
say `1.2.3` publishes from the tag instead (a rebuild: a new digest, new SBOMs
and signatures).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

from ci.access import RegistryAccess
from ci.errors import BrokkrError
from ci.publishing import inspection as _inspection
from ci.publishing import plan as _plan
from ci.publishing import readback as _readback
from ci.publishing.publish import READ_LOGIN_HINT
from ci.publishing.request import PublishRequest
from ci.registry.client import Manifest, RegistryClient
from ci.rules.components import Component, component_spec
from ci.rules.labels import DEFAULT_SOURCE_URL, REVISION_LABEL
from ci.rules.namespace import Namespace, parse_namespace
from ci.rules.platforms import parse_platform, parse_platforms
from ci.rules.reference import ImageReference, parse_reference
from ci.rules.tags import OCI_TAG, validate_sha

__all__ = ["PromoteRequest", "promote"]


@dataclass(frozen=True)
class PromoteRequest:
    """A validated `promote` call: the source tag, the publish request it stands for."""

    source_tag: str
    publish: PublishRequest
    explicit: bool = False
    """Components were named (`--components` or an address): every one must have the image."""

    @classmethod
    def create(
        cls,
        *,
        from_: str,
        ref: str,
        sha: str,
        registry: Namespace,
        components: Sequence[Component] = (),
    ) -> PromoteRequest:
        """Check every input. `from_` is a tag of every component's repository
        (`main-sha-abc1234`) or one image's address (its repository names the
        registry and the component)."""
        if not ref.startswith("refs/tags/"):
            raise BrokkrError(
                f"promote makes a release: --ref must be a git tag (refs/tags/vX.Y.Z), got {ref!r}"
            )
        if not sha:
            raise BrokkrError("--sha is required: the commit the release is made from")
        components_given = tuple(components)
        sha = validate_sha(sha)
        source_tag, registry, components = _source(from_, registry, components)
        request = PublishRequest.create(
            ref=ref,
            sha=sha,
            pr=None,
            component=None,
            registry=registry,
            platforms=parse_platforms(["linux/amd64"]),  # read back: the source's own
            created="",
            source_url=DEFAULT_SOURCE_URL,
        )
        request = dataclasses.replace(request, components=components)
        return cls(source_tag, request, explicit=bool(components_given) or "/" in from_)


def _source(
    from_: str, registry: Namespace, components: Sequence[Component]
) -> tuple[str, Namespace, tuple[Component, ...]]:
    text = from_.strip()
    if not text:
        raise BrokkrError("--from is required: the tested image's tag or address")
    if "/" not in text:
        if not OCI_TAG.fullmatch(text):
            raise BrokkrError(f"--from {text!r} is neither a tag nor an image address")
        return text, registry, tuple(dict.fromkeys(components)) or tuple(Component)
    ref = parse_reference(text)
    if ref.digest or not ref.tag:
        raise BrokkrError(f"--from {text!r}: give the image by tag (e.g. main-sha-abc1234)")
    parent, _, name = ref.name.rpartition("/")
    matching = [c for c in Component if component_spec(c).name == name]
    if not matching:
        names = ", ".join(component_spec(c).name for c in Component)
        raise BrokkrError(f"--from {text!r} is not one of Brokkr's repositories ({names})")
    if components and tuple(components) != tuple(matching):
        raise BrokkrError("--components contradicts the repository --from names")
    return ref.tag, parse_namespace(parent), tuple(matching)


@dataclass
class _Source:
    target: _plan.Target
    manifest: Manifest
    platforms: tuple[str, ...]


async def _check_source(
    request: PromoteRequest, client: RegistryClient, target: _plan.Target
) -> _Source:
    ref = target.repository.with_tag(request.source_tag)
    if request.source_tag not in target.existing:
        raise BrokkrError(f"not found: {ref} (no tag {request.source_tag}); nothing was promoted")
    manifest = await client.get_manifest(ref)
    if not manifest.is_index:
        raise BrokkrError(f"{ref} is a single manifest, not a multi-platform image publish made")
    revision = (await client.config_labels(ref)).get(REVISION_LABEL, "")
    if revision.lower() != request.publish.sha.lower():
        raise BrokkrError(
            f"{ref} was built from commit {revision or 'unknown (no revision label)'}, not "
            f"{request.publish.sha}: refusing to release it for that commit. Nothing was promoted."
        )
    described = await client.inspect(ref)
    platforms = tuple(sorted({parse_platform(p.platform).platform for p in described.platforms}))
    # An immutable tag that already names this very image is no conflict (a re-run).
    same = set()
    for tag in target.conflicts:
        existing = await client.fetch_manifest_or_none(target.repository.with_tag(tag))
        if existing is not None and existing.digest == manifest.digest:
            same.add(tag)
    target.existing = target.existing - same
    return _Source(target, manifest, platforms)


async def promote(request: PromoteRequest, access: RegistryAccess) -> str:
    """Check every component, then push and read back each; see the module docstring."""
    async with access.client(anonymous_hint=READ_LOGIN_HINT) as client:
        targets = await _plan.plan(request.publish, client)
        skipped = []
        if not request.explicit:  # by default, the components this registry has
            skipped = [t for t in targets if not t.existing]
            targets = [t for t in targets if t.existing]
            if not targets:
                raise BrokkrError(
                    f"none of {request.publish.registry}'s Brokkr repositories exists; "
                    "nothing was promoted"
                )
        host = targets[0].repository.registry
        with client.operation(host, f"checking {request.source_tag} for promotion"):
            sources = [await _check_source(request, client, t) for t in targets]
        _plan.refuse_overwrites(request.publish, targets)
        lines: list[str] = []
        notes = [f"# {t.repository.name}: no such repository, skipped" for t in skipped]
        for source in sources:
            target = source.target
            refs: dict[str, str] = {}
            for tag in _plan.pinned_first(target.tags):
                digest = await client.push_manifest(
                    target.repository, tag.name, source.manifest.body, source.manifest.media_type
                )
                target.pushed.append(tag.name)
                refs[target.address(tag.name)] = f"{target.address(tag.name)}@{digest}"
            problems = await _readback.verify(source.platforms, target, refs, client)
            if problems:
                raise BrokkrError(
                    "promoted, but the registry does not serve what was pushed: "
                    + "; ".join(problems)
                )
            lines += [refs[target.address(t.name)] for t in target.tags]
            notes += await _supply_chain_notes(client, target.repository, request.source_tag)
        return "\n".join([*lines, *notes])


async def _supply_chain_notes(
    client: RegistryClient, repository: ImageReference, source_tag: str
) -> list[str]:
    """`# promoted …` and, per platform, whether its SBOM and signature are in place."""
    with client.operation(repository.registry, f"reading the supply chain of {repository.name}"):
        description = await client.inspect(repository.with_tag(source_tag))
        sboms = await _inspection.sbom_attached(client, description)
        signatures = await _inspection.signatures_stored(client, description)
    notes = [f"# promoted {repository.name}:{source_tag}@{description.digest} (no build)"]
    for platform in description.platforms:
        sbom = "attached" if sboms.get(platform.digest) else "none"
        signed = "signed" if signatures.get(platform.digest) else "unsigned"
        notes.append(f"# {platform.platform} {platform.digest}: SBOM {sbom}, {signed}")
    index = "signed" if signatures.get(description.digest) else "unsigned"
    notes.append(f"# index {description.digest}: {index}")
    return notes
