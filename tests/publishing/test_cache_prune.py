"""The dependency cache's life: publish dates each cache image with its `--created`, and
`prune --dependency-cache --keep K` orders the keys by it, against docker-registry with
deletion enabled (the stand-in engine's publish really pushes there)."""

from __future__ import annotations

import json
import uuid

import httpx

from ci.access import RegistryAccess
from ci.publishing import prune as _prune
from ci.rules import cache_key as _key
from ci.rules.labels import EPOCH
from ci.rules.namespace import parse_namespace
from tests.support.github_packages import storage_revisions
from tests.support.lifecycle import ACCEPT, tags_of
from tests.support.publishing import publish_to
from tests.support.registry_server import RegistryServer
from tests.support.standin import ModuleCaller, StandInEngine

SHA = "0123456789abcdef0123456789abcdef01234567"
OLDER = "2026-03-01T09:00:00Z"
NEWER = "2026-03-02T09:00:00+02:00"  # an offset: compared as an instant


def cache_labels(registry: RegistryServer, repository: str, tag: str) -> dict[str, str]:
    """The labels of the image config `repository:tag` holds, as the registry serves it."""
    base = f"{registry.base_url}/v2/{repository}"
    manifest = httpx.get(f"{base}/manifests/{tag}", headers={"Accept": ACCEPT}).json()
    config = httpx.get(f"{base}/blobs/{manifest['config']['digest']}").json()
    return config["config"]["Labels"]


async def test_prune_keeps_the_newest_saved_keys_and_never_an_undated_one(
    brokkr: ModuleCaller, engine: StandInEngine, deleting_registry: RegistryServer
):
    publish_to(engine, deleting_registry)
    namespace = f"c{uuid.uuid4().hex[:10]}"
    registry = f"{deleting_registry.registry}/{namespace}"
    repository = f"{namespace}/{_key.CACHE_REPOSITORY}"
    # Three publishes, three keys: amd64 (older commit), arm64 (newer commit), and arm64
    # under emulation (another build mode) with publish's default --created.
    runs = [
        ({"platforms": ["linux/amd64"], "created": OLDER}, OLDER),
        ({"platforms": ["linux/arm64"], "created": NEWER}, NEWER),
        ({"platforms": ["linux/arm64"], "emulate": True}, EPOCH),
    ]
    saved: list[str] = []
    for pr, (options, created) in enumerate(runs, start=1):
        before = set(tags_of(deleting_registry, repository))
        text = await brokkr.call(
            "publish", pr=pr, sha=SHA, registry=registry, component="BROKER", **options
        )
        assert any(" saved " in line for line in text.splitlines()), text
        (tag,) = set(tags_of(deleting_registry, repository)) - before
        assert _key.is_cache_tag(tag)
        labels = cache_labels(deleting_registry, repository, tag)
        assert labels[_key.CREATED_LABEL] == created
        assert labels[_key.KEY_LABEL] == tag.rsplit("-", 1)[1]
        saved.append(tag)
    older, newer, undated = saved
    assert older.startswith("deps-linux-amd64-")
    assert len({_key.parse_cache_tag(t) for t in saved}) == 3
    older_digest = tags_of(deleting_registry, repository)[older]

    out = await _prune.prune(
        _prune.PruneRequest.create(
            registry=parse_namespace(registry),
            dependency_cache=True,
            keep=1,
            output=_prune.PruneFormat.JSON,
        ),
        RegistryAccess(),
    )
    after = tags_of(deleting_registry, repository)
    assert sorted(after) == sorted([newer, undated])
    assert older_digest not in storage_revisions(deleting_registry, repository)
    entries = {(e["action"], tuple(e["tags"])): e for e in json.loads(out)}
    assert set(entries) == {("keep", (undated,)), ("remove", (older,))}
    assert "age unknown" in entries[("keep", (undated,))]["reason"]
    removed = entries[("remove", (older,))]
    assert removed["done"]
    assert removed["digest"] == older_digest
    assert f"older than the 1 newest dependency-cache keys ({OLDER})" in removed["reason"]

    # With --keep 0 the dated key goes too; the undated one still stays.
    await _prune.prune(
        _prune.PruneRequest.create(
            registry=parse_namespace(registry), dependency_cache=True, keep=0
        ),
        RegistryAccess(),
    )
    assert sorted(tags_of(deleting_registry, repository)) == [undated]
