"""`prune` against docker-registry with deletion enabled, and against the loopback
stand-in for GitHub's packages API (backed by the same registry)."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from ci.access import RegistryAccess
from ci.errors import BrokkrError
from ci.publishing import prune as _prune
from ci.registry.client import Credentials
from ci.rules.components import Component
from ci.rules.namespace import parse_namespace
from ci.supply_chain import signing as _signing
from tests.support.github_packages import github_api, storage_revisions
from tests.support.lifecycle import supply_chain, tags_of
from tests.support.registry_proxy import RegistryProxy
from tests.support.registry_server import RegistryServer, build_image, push_built_image

TOKEN = "ghp_standin-token-3b7c"
LOGIN = RegistryAccess(credentials=Credentials("someone", TOKEN))
CREATED = "org.opencontainers.image.created"


async def seed(
    registry: RegistryServer, repository: str, key: _signing.SigningKey
) -> dict[str, str]:
    """A release, a main image (also under pr-8), three old main-sha images and pr-7."""
    base = registry.base_url
    images = {}
    plan = [
        ("release", ["1.2.3", "1.2", "1", "latest"], "2026-01-10T00:00:00Z"),
        ("main", ["main", "main-sha-aaaaaaa", "pr-8"], "2026-01-20T00:00:00Z"),
        ("old1", ["main-sha-bbbbbbb"], "2026-01-01T00:00:00Z"),
        ("old2", ["main-sha-ccccccc"], "2026-01-02T00:00:00Z"),
        ("old3", ["main-sha-ddddddd"], "2026-01-03T00:00:00Z"),
        ("pr7", ["pr-7"], "2026-01-21T00:00:00Z"),
    ]
    for name, tags, created in plan:
        built = build_image(seed=name, labels={CREATED: created})
        images[name] = push_built_image(base, repository, tags, built)
        await supply_chain(f"{registry.registry}/{repository}", images[name], key)
    return images


@pytest.fixture
def key() -> _signing.SigningKey:
    return _signing.SigningKey(ec.generate_private_key(ec.SECP256R1()))


@pytest.fixture
def namespace() -> str:
    return f"p{uuid.uuid4().hex[:10]}"


def reachable(registry: RegistryServer, repository: str, tags: dict[str, str]) -> set[str]:
    """Digests of `tags` and their children (what must survive)."""
    found = set(tags.values())
    for digest in list(found):
        reply = httpx.get(
            f"{registry.base_url}/v2/{repository}/manifests/{digest}",
            headers={"Accept": "application/vnd.oci.image.index.v1+json"},
        )
        found |= {m["digest"] for m in reply.json().get("manifests", [])}
    return found


def request(registry: RegistryServer, namespace: str, **options) -> _prune.PruneRequest:
    return _prune.PruneRequest.create(
        registry=parse_namespace(f"{registry.registry}/{namespace}"),
        components=[Component.BROKER],
        **options,
    )


async def test_prune_pr_leaves_no_trace_and_touches_nothing_protected(
    deleting_registry, namespace, key
):
    repo = f"{namespace}/brokkr-broker"
    images = await seed(deleting_registry, repo, key)
    before = tags_of(deleting_registry, repo)
    stored_before = storage_revisions(deleting_registry, repo)
    dry = await _prune.prune(
        request(deleting_registry, namespace, pr=7, dry_run=True), RegistryAccess()
    )
    assert f"would remove {deleting_registry.registry}/{repo}@{images['pr7']} (pr-7)" in dry
    assert tags_of(deleting_registry, repo) == before  # a dry run changes nothing
    assert storage_revisions(deleting_registry, repo) == stored_before

    out = await _prune.prune(request(deleting_registry, namespace, pr=7), RegistryAccess())
    after = tags_of(deleting_registry, repo)
    assert "pr-7" not in after
    # Every tag but pr-7 and the supply-chain tags of pr-7's manifests is unchanged.
    gone = {t for t in before if t not in after}
    assert "pr-7" in gone
    for tag in gone - {"pr-7"}:
        assert tag.startswith("sha256-")
    kept = {t: d for t, d in before.items() if t not in gone}
    assert after == kept
    # No manifest of pr-7 is stored any more; every manifest a kept tag reaches is.
    stored = storage_revisions(deleting_registry, repo)
    assert images["pr7"] not in stored
    assert reachable(deleting_registry, repo, after) <= stored
    assert len(gone) == 1 + 2 + 3  # pr-7, two SBOM fallback tags, three signature tags
    # pr-7's platform manifests, SBOMs and signatures are gone too: only what a kept tag
    # reaches (or its supply chain) is stored.
    assert len(stored) < len(stored_before)
    assert "removed" in out


async def test_a_shared_tag_is_kept_and_reported_on_a_registry_without_tag_deletion(
    deleting_registry, namespace, key
):
    repo = f"{namespace}/brokkr-broker"
    images = await seed(deleting_registry, repo, key)
    before = tags_of(deleting_registry, repo)
    out = await _prune.prune(
        request(deleting_registry, namespace, pr=8, output=_prune.PruneFormat.JSON),
        RegistryAccess(),
    )
    entries = json.loads(out)
    assert [(e["action"], e["tags"], e["digest"]) for e in entries] == [
        ("keep", ["pr-8"], images["main"])
    ]
    assert "does not delete a tag alone" in entries[0]["reason"]
    assert tags_of(deleting_registry, repo) == before


async def test_branch_keep_k_keeps_exactly_the_k_newest(deleting_registry, namespace, key):
    repo = f"{namespace}/brokkr-broker"
    images = await seed(deleting_registry, repo, key)
    out = await _prune.prune(
        request(deleting_registry, namespace, branch="main", keep=2), RegistryAccess()
    )
    after = tags_of(deleting_registry, repo)
    assert sorted(t for t in after if t.startswith("main-sha-")) == [
        "main-sha-aaaaaaa",
        "main-sha-ddddddd",
    ]
    assert {"1.2.3", "latest", "main", "pr-7", "pr-8"} <= set(after)
    stored = storage_revisions(deleting_registry, repo)
    assert images["old1"] not in stored
    assert images["old2"] not in stored
    assert "older than the 2 newest main-sha-*" in out


async def test_a_registry_that_refuses_deletion_names_what_was_not_removed(registry, key):
    namespace = f"p{uuid.uuid4().hex[:10]}"
    repo = f"{namespace}/brokkr-broker"
    await seed(registry, repo, key)
    before = tags_of(registry, repo)
    with pytest.raises(
        BrokkrError, match=r"refuses manifest deletion.*Nothing was removed\. Not removed: sha256:"
    ):
        await _prune.prune(request(registry, namespace, pr=7), RegistryAccess())
    assert tags_of(registry, repo) == before


async def test_dependency_cache_keeps_the_k_most_recent_keys(deleting_registry, namespace):
    repo = f"{namespace}/brokkr-build-cache"
    keys = {}
    for day in (1, 2, 3):
        key = f"{day}" * 64
        keys[day] = key
        for platform in ("linux/amd64", "linux/arm64"):
            built = build_image(
                [platform],
                index=False,
                seed=f"{key}{platform}",
                labels={CREATED: f"2026-02-0{day}T00:00:00Z"},
            )
            push_built_image(
                deleting_registry.base_url,
                repo,
                [f"deps-{platform.replace('/', '-')}-{key}"],
                built,
            )
    await _prune.prune(
        _prune.PruneRequest.create(
            registry=parse_namespace(f"{deleting_registry.registry}/{namespace}"),
            dependency_cache=True,
            keep=1,
        ),
        RegistryAccess(),
    )
    assert sorted(tags_of(deleting_registry, repo)) == [
        f"deps-linux-amd64-{keys[3]}",
        f"deps-linux-arm64-{keys[3]}",
    ]


# GitHub's packages API -----------------------------------------------------------------


def github_request(registry, namespace, api, **options) -> _prune.PruneRequest:
    return request(
        registry, namespace, deletion=_prune.Deletion.GITHUB, github_api=api.url, **options
    )


@pytest.mark.parametrize("owner", ["orgs", "users"])
async def test_github_prune_pr_deletes_versions_and_nothing_protected(
    deleting_registry, namespace, key, owner
):
    repo = f"{namespace}/brokkr-broker"
    images = await seed(deleting_registry, repo, key)
    before = tags_of(deleting_registry, repo)
    with github_api(deleting_registry, "", TOKEN) as api:
        if owner == "orgs":
            api.organizations.add(namespace)
        api.per_page_max = 5  # several pages, followed through Link
        dry = await _prune.prune(
            github_request(deleting_registry, namespace, api, pr=7, dry_run=True),
            LOGIN,
        )
        assert not any(method == "DELETE" for method, _ in api.requests)
        assert images["pr7"] in dry
        await _prune.prune(
            github_request(deleting_registry, namespace, api, pr=7),
            LOGIN,
        )
        deletes = [path for method, path in api.requests if method == "DELETE"]
        assert deletes
        assert all(p.startswith(f"/{owner}/{namespace}/packages/container/") for p in deletes)
        assert any("page=2" in path for _, path in api.requests)
    after = tags_of(deleting_registry, repo)
    assert "pr-7" not in after
    assert images["pr7"] not in storage_revisions(deleting_registry, repo)
    assert reachable(deleting_registry, repo, after) <= storage_revisions(deleting_registry, repo)
    assert {t: d for t, d in before.items() if not t.startswith("sha256-") and t != "pr-7"} == {
        t: d for t, d in after.items() if not t.startswith("sha256-")
    }


async def test_a_lying_listing_cannot_make_it_delete_a_protected_digest(
    deleting_registry, namespace, key
):
    repo = f"{namespace}/brokkr-broker"
    images = await seed(deleting_registry, repo, key)
    before = tags_of(deleting_registry, repo)

    def lie(versions):
        for version in versions:
            tags = version["metadata"]["container"]["tags"]
            if version["name"] == images["release"]:
                tags[:] = ["pr-7"]  # the release claims to be pr-7 only
            elif version["name"] == images["pr7"]:
                tags[:] = ["pr-7", "latest"]  # pr-7's version claims `latest` too
        return versions

    with github_api(deleting_registry, "", TOKEN) as api:
        api.tamper = lie
        out = await _prune.prune(
            github_request(deleting_registry, namespace, api, pr=7),
            LOGIN,
        )
        deleted_ids = {path.rsplit("/", 1)[1] for m, path in api.requests if m == "DELETE"}
        assert str(api.ids[images["release"]]) not in deleted_ids
        assert str(api.ids[images["pr7"]]) not in deleted_ids
    after = tags_of(deleting_registry, repo)
    for tag in ("1.2.3", "1.2", "1", "latest", "pr-7"):
        assert after[tag] == before[tag]
    assert "GitHub lists it with tags the registry does not: latest" in out


async def test_a_listing_that_repeats_a_digest_or_links_elsewhere_is_refused(
    deleting_registry, namespace, key
):
    repo = f"{namespace}/brokkr-broker"
    await seed(deleting_registry, repo, key)
    before = tags_of(deleting_registry, repo)
    with github_api(deleting_registry, "", TOKEN) as api:
        api.tamper = lambda versions: [*versions, {**versions[0], "id": 1}]
        with pytest.raises(BrokkrError, match="twice"):
            await _prune.prune(
                github_request(deleting_registry, namespace, api, pr=7),
                LOGIN,
            )
        api.tamper = None
        api.per_page_max = 3
        api.link_to = "http://127.0.0.2:9/elsewhere"
        with pytest.raises(BrokkrError, match="another server"):
            await _prune.prune(
                github_request(deleting_registry, namespace, api, pr=7),
                LOGIN,
            )
        assert not any(m == "DELETE" for m, _ in api.requests)
    assert tags_of(deleting_registry, repo) == before


def test_prune_requests_are_checked_before_any_work():
    registry = "127.0.0.1:5000/x"
    for options, message in [
        ({}, "exactly one of"),
        ({"pr": 7, "branch": "main", "keep": 1}, "exactly one of"),
        ({"pr": 7, "keep": 2}, "--keep goes with"),
        ({"branch": "main"}, "need --keep"),
        ({"branch": "main", "keep": -1}, "0 or more"),
        ({"pr": 0}, "pull request number"),
        ({"pr": 7, "github_api": "http://api.example.com"}, "plain HTTP off loopback"),
    ]:
        with pytest.raises(BrokkrError, match=message):
            _prune.PruneRequest.create(registry=parse_namespace(registry), **options)


async def test_a_deletion_github_refuses_names_what_was_and_was_not_removed(
    deleting_registry, namespace, key
):
    repo = f"{namespace}/brokkr-broker"
    await seed(deleting_registry, repo, key)
    with github_api(deleting_registry, "", TOKEN) as api:
        api.deletes_allowed = 2
        with pytest.raises(BrokkrError) as info:
            await _prune.prune(
                github_request(deleting_registry, namespace, api, pr=7),
                LOGIN,
            )
    message = str(info.value)
    assert "GitHub's API refused the deletion" in message
    assert "it was not removed. Removed: sha256:" in message
    assert "Not removed: " in message
    assert "(pr-7)" in message.split("Not removed: ")[1]  # the tagged index goes last
    assert TOKEN not in message
    assert "pr-7" in tags_of(deleting_registry, repo)  # a second run can finish the job


async def test_prune_through_the_module_dry_run_json(brokkr, deleting_registry, namespace, key):
    repo = f"{namespace}/brokkr-agent"
    images = await seed(deleting_registry, repo, key)
    before = tags_of(deleting_registry, repo)
    out = await brokkr.call(
        "prune",
        pr=7,
        components=["AGENT"],
        registry=f"{deleting_registry.registry}/{namespace}",
        dry_run=True,
        format="JSON",
    )
    entries = json.loads(out)
    assert entries[-1]["digest"] == images["pr7"]
    assert entries[-1]["tags"] == ["pr-7"]
    assert {e["action"] for e in entries} == {"remove"}
    assert not any(e["done"] for e in entries)
    assert len(entries) == 1 + 2 + 2 + 2 + 3  # index, platforms, fallback indexes, SBOMs, sigs
    assert tags_of(deleting_registry, repo) == before


async def test_branch_keep_never_removes_an_image_of_unknown_age(deleting_registry, namespace):
    repo = f"{namespace}/brokkr-broker"
    for name, created in [
        ("a", "2026-01-01T00:00:00Z"),
        ("b", "2026-01-02T00:00:00Z"),
        ("c", "1970-01-01T00:00:00Z"),  # publish's default --created: no age
    ]:
        built = build_image(seed=name, labels={CREATED: created})
        push_built_image(deleting_registry.base_url, repo, [f"main-sha-{name * 7}"], built)
    out = await _prune.prune(
        request(deleting_registry, namespace, branch="main", keep=0), RegistryAccess()
    )
    assert sorted(tags_of(deleting_registry, repo)) == ["main-sha-ccccccc"]
    assert "keeps " in out
    assert "main-sha-ccccccc" in out
    assert "age unknown" in out


async def test_github_deletion_needs_a_token_and_a_refused_token_is_named_not_shown(
    deleting_registry, namespace
):
    repo = f"{namespace}/brokkr-broker"
    push_built_image(deleting_registry.base_url, repo, ["pr-7"], build_image(seed="t"))
    with github_api(deleting_registry, "", TOKEN) as api:
        with pytest.raises(BrokkrError, match=r"needs a token.*Nothing was read or removed"):
            await _prune.prune(
                github_request(deleting_registry, namespace, api, pr=7), RegistryAccess()
            )
        assert api.requests == []

        with pytest.raises(BrokkrError, match="needs permission to read and delete") as info:
            await _prune.prune(
                github_request(deleting_registry, namespace, api, pr=7),
                RegistryAccess(credentials=Credentials("someone", "ghp_wrong-token-9d1e")),
            )
        assert "ghp_wrong-token-9d1e" not in str(info.value)
    assert "pr-7" in tags_of(deleting_registry, repo)


async def test_a_shared_tag_goes_alone_where_the_registry_deletes_single_tags(
    deleting_registry, namespace, key
):
    repo = f"{namespace}/brokkr-broker"
    images = await seed(deleting_registry, repo, key)
    before = tags_of(deleting_registry, repo)
    with RegistryProxy(deleting_registry, tag_deletion=True) as proxy:
        out = await _prune.prune(
            _prune.PruneRequest.create(
                registry=parse_namespace(f"{proxy.registry}/{namespace}"),
                components=[Component.BROKER],
                pr=8,
            ),
            RegistryAccess(),
        )
        deletes = [(p, status) for m, p, status in proxy.requests if m == "DELETE"]
        assert deletes == [(f"/v2/{repo}/manifests/pr-8", 202)]  # the tag alone
    after = tags_of(deleting_registry, repo)
    assert "pr-8" not in after
    assert after == {t: d for t, d in before.items() if t != "pr-8"}
    assert images["main"] in storage_revisions(deleting_registry, repo)
    assert f"removed tag {proxy.registry}/{repo}:pr-8" in out
