"""The protection rule of `prune` (ci/rules/retention.py), as tables and properties."""

from __future__ import annotations

import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ci.errors import BrokkrError
from ci.rules.cache_key import is_cache_tag, parse_cache_tag
from ci.rules.retention import (
    RepositoryState,
    Stamped,
    branch_sha_tags,
    cache_key_of,
    keep_newest,
    plan,
    subject_of_tag,
)


def d(name: str) -> str:
    return "sha256:" + hashlib.sha256(name.encode()).hexdigest()


def sc(digest: str, suffix: str = "") -> str:
    """The supply-chain tag of `digest` (`sha256-<hex>` + suffix)."""
    return digest.replace(":", "-") + suffix


def image(tags: dict[str, str], children: dict[str, list[str]], name: str, *, signed=True):
    """Add image `name` (an index over two platforms, SBOM fallback tags, signatures)."""
    index, amd, arm = d(name), d(name + "/amd64"), d(name + "/arm64")
    children[index] = [amd, arm]
    for child in (amd, arm):
        fallback = d(name + "/fallback" + child)
        tags[sc(child)] = fallback
        children[fallback] = [d(name + "/sbom" + child)]
    if signed:
        for digest in (index, amd, arm):
            tags[sc(digest, ".sig")] = d(name + "/sig" + digest)
    return index


def repository() -> tuple[RepositoryState, dict[str, str]]:
    tags: dict[str, str] = {}
    children: dict[str, list[str]] = {}
    release = image(tags, children, "release")
    main = image(tags, children, "main")
    pr7 = image(tags, children, "pr7")
    for tag in ("1.2.3", "1.2", "1", "latest"):
        tags[tag] = release
    tags["main"] = main
    tags["main-sha-aaaaaaa"] = main
    tags["pr-7"] = pr7
    tags["pr-8"] = main  # the same build as main
    return RepositoryState(tags, children), {"release": release, "main": main, "pr7": pr7}


def test_pr_removes_its_image_children_sboms_and_signatures():
    state, images = repository()
    result = plan(state, {"pr-7": "closed"}, can_delete_tags=False)
    removed = {r.digest for r in result.removals}
    pr7 = images["pr7"]
    assert pr7 in removed
    assert set(state.children[pr7]) <= removed
    for child in state.children[pr7]:
        assert state.tags[sc(child)] in removed
        assert set(state.children[state.tags[sc(child)]]) <= removed
        assert state.tags[sc(child, ".sig")] in removed
    assert state.tags[sc(pr7, ".sig")] in removed
    assert removed.isdisjoint(result.protected)
    assert result.kept == ()
    # Deepest first: the tagged index is removed last.
    assert result.removals[-1].digest == pr7
    assert "pr-7" in result.removals[-1].tags


def test_nothing_reachable_from_a_kept_tag_is_removed():
    state, images = repository()
    result = plan(state, {"pr-7": "closed"}, can_delete_tags=True)
    for name in ("release", "main"):
        assert images[name] in result.protected
        for child in state.children[images[name]]:
            assert child in result.protected
            assert state.tags[sc(child, ".sig")] in result.protected


def test_a_tag_sharing_its_image_with_a_kept_tag_goes_alone_or_stays():
    state, images = repository()
    alone = plan(state, {"pr-8": "closed"}, can_delete_tags=True)
    assert [(r.digest, r.tags, r.tag_only) for r in alone.removals] == [
        (images["main"], ("pr-8",), True)
    ]
    assert alone.removals[0].reason == "closed; image kept: main, main-sha-aaaaaaa"
    kept = plan(state, {"pr-8": "closed"}, can_delete_tags=False)
    assert kept.removals == ()
    assert [(k.tag, k.digest) for k in kept.kept] == [("pr-8", images["main"])]
    assert "deletes images, not single tags" in kept.kept[0].reason


def test_a_platform_manifest_shared_with_a_release_stays():
    state, images = repository()
    tags = dict(state.tags)
    children = {k: list(v) for k, v in state.children.items()}
    release_amd = children[images["release"]][0]
    mixed = d("mixed")
    children[mixed] = [release_amd, d("mixed/arm64")]
    tags["pr-9"] = mixed
    result = plan(RepositoryState(tags, children), {"pr-9": "closed"}, can_delete_tags=False)
    removed = {r.digest for r in result.removals}
    assert removed == {mixed, d("mixed/arm64")}
    assert release_amd in result.protected


def test_referrers_from_the_api_go_with_their_subject_and_stay_with_a_kept_one():
    state, images = repository()
    sbom_pr, sbom_rel = d("api-sbom-pr"), d("api-sbom-rel")
    with_api = RepositoryState(
        state.tags,
        state.children,
        {images["pr7"]: [sbom_pr], images["release"]: [sbom_rel]},
    )
    result = plan(with_api, {"pr-7": "closed"}, can_delete_tags=False)
    removed = {r.digest for r in result.removals}
    assert sbom_pr in removed
    assert sbom_rel in result.protected
    assert sbom_rel not in removed


def test_a_tag_the_repository_lacks_is_no_work_and_supply_chain_tags_cannot_be_asked():
    state, _ = repository()
    assert plan(state, {"pr-99": "closed"}, can_delete_tags=True).removals == ()
    with pytest.raises(BrokkrError, match="goes with its image"):
        plan(state, {sc(d("x"), ".sig"): "no"}, can_delete_tags=True)


def test_a_supply_chain_tag_whose_content_is_kept_goes_alone_or_stays():
    state, images = repository()
    tags = dict(state.tags)
    # The pr-7 index's signature manifest is byte-identical to main's (shared content).
    tags[sc(images["pr7"], ".sig")] = tags[sc(images["main"], ".sig")]
    shared = RepositoryState(tags, state.children)
    kept = plan(shared, {"pr-7": "closed"}, can_delete_tags=False)
    assert [k.tag for k in kept.kept] == [sc(images["pr7"], ".sig")]
    alone = plan(shared, {"pr-7": "closed"}, can_delete_tags=True)
    assert any(r.tag_only and r.tags == (sc(images["pr7"], ".sig"),) for r in alone.removals)


@pytest.mark.parametrize(
    ("tag", "subject"),
    [
        (sc(d("a")), d("a")),
        (sc(d("a"), ".sig"), d("a")),
        (sc(d("a"), ".att"), d("a")),
        ("sha256-abc", None),
        ("sha512-" + "0" * 64, None),
        ("latest", None),
        ("pr-7", None),
    ],
)
def test_subject_of_tag(tag, subject):
    assert subject_of_tag(tag) == subject


def test_branch_sha_tags_and_cache_keys():
    tags = ["main", "main-sha-abcdef1", "main-sha-ABCDEF1", "main-sha-abc", "mainx-sha-abcdef1"]
    tags += ["feature-main-sha-1234567", "main-sha-1234567"]
    assert branch_sha_tags(tags, "main") == ["main-sha-abcdef1", "main-sha-1234567"]
    key = "f" * 64
    assert cache_key_of(f"deps-linux-amd64-{key}") == key
    assert cache_key_of(f"deps-linux-arm-v7-{key}") == key
    for other in ("deps-main", f"deps-{key}", "latest", f"deps-linux-amd64-{key[:-1]}"):
        assert cache_key_of(other) is None


@given(
    st.sampled_from(["deps-", "dep-", ""]),
    st.lists(st.sampled_from(["linux", "windows", "amd64", "arm64", "arm", "v7", "x"]), max_size=4),
    st.text(alphabet="0123456789abcdefA", min_size=62, max_size=66),
)
def test_prune_and_list_tags_agree_on_what_a_cache_tag_is(prefix, parts, key):
    # One grammar (ci.rules.cache_key): what prune groups by key, list-tags hides.
    tag = prefix + "-".join([*parts, key])
    assert (cache_key_of(tag) is not None) == is_cache_tag(tag)
    parsed = parse_cache_tag(tag)
    assert cache_key_of(tag) == (parsed[1] if parsed else None)


def test_keep_newest_keeps_exactly_k_and_never_an_undated_one():
    items = [
        Stamped("a", "2026-01-01T00:00:00Z"),
        Stamped("b", "2026-03-01T00:00:00Z"),
        Stamped("c", None),
        Stamped("d", "2026-02-01T00:00:00Z"),
    ]
    assert keep_newest(items, 2) == (["b", "d"], ["a"], ["c"])
    assert keep_newest(items, 0) == ([], ["b", "d", "a"], ["c"])
    assert keep_newest(items, 5) == (["b", "d", "a"], [], ["c"])
    with pytest.raises(BrokkrError):
        keep_newest(items, -1)


def test_keep_newest_compares_instants_and_never_trusts_the_epoch_or_a_tie():
    items = [
        Stamped("utc", "2026-01-01T10:00:00Z"),
        Stamped("later-by-offset", "2026-01-01T11:30:00+01:00"),  # 10:30 UTC
        Stamped("epoch", "1970-01-01T00:00:00Z"),  # publish's default --created
        Stamped("garbage", "yesterday"),
        Stamped("naive", "2026-01-01T12:00:00"),
    ]
    assert keep_newest(items, 1) == (["later-by-offset"], ["utc"], ["epoch", "garbage", "naive"])
    tied = [Stamped(n, "2026-01-01T00:00:00Z") for n in "abc"] + [
        Stamped("old", "2025-01-01T00:00:00Z")
    ]
    kept, removed, _ = keep_newest(tied, 2)
    assert sorted(kept) == ["a", "b", "c"]
    assert removed == ["old"]


names = st.sampled_from([f"img{i}" for i in range(6)])


@given(
    st.dictionaries(st.sampled_from([f"t{i}" for i in range(8)]), names, min_size=1),
    st.dictionaries(names, st.lists(names, max_size=3)),
    st.dictionaries(names, st.lists(names, max_size=2)),
    st.data(),
    st.booleans(),
)
def test_property_nothing_a_staying_tag_reaches_is_ever_removed(
    tag_map, child_map, sig_map, data, can_delete_tags
):
    tags = {t: d(n) for t, n in tag_map.items()}
    children = {d(k): [d(c) for c in v] for k, v in child_map.items()}
    for subject, signatures in sig_map.items():
        for i, signature in enumerate(signatures):
            tags[sc(d(subject), f".s{i}")] = d(signature)
    state = RepositoryState(tags, children)
    plain = sorted(t for t in tag_map)
    doomed = data.draw(st.lists(st.sampled_from(plain), unique=True))
    result = plan(state, dict.fromkeys(doomed, "test"), can_delete_tags=can_delete_tags)
    staying = [tags[t] for t in plain if t not in doomed]
    reachable = state.reach(staying)
    for removal in result.removals:
        if removal.tag_only:
            assert can_delete_tags
            assert all(t in doomed or subject_of_tag(t) for t in removal.tags)
        else:
            assert removal.digest not in reachable
            # Every tag that goes with a removed manifest was asked to go, or is supply chain.
            assert all(t in doomed or subject_of_tag(t) for t in removal.tags)
    # Every doomed tag is removed, alone or with its image, or kept and reported.
    gone = {t for r in result.removals for t in r.tags} | {k.tag for k in result.kept}
    assert set(doomed) <= gone
