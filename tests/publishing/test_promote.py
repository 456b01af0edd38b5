"""`promote` through the module (stand-in engine) against docker-registry: a tested
image becomes the release without a build; a commit mismatch, an existing release
of another image and a backwards move are refused or held back."""

from __future__ import annotations

import uuid

import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from dagger.mod._exceptions import FunctionError

from ci.rules.labels import REVISION_LABEL
from ci.supply_chain import signing as _signing
from tests.support.lifecycle import supply_chain, tags_of
from tests.support.registry_server import RegistryServer, push_image
from tests.support.standin import ModuleCaller, StandInEngine

SHA = "0123456789abcdef0123456789abcdef01234567"
OTHER = "fedcba9876543210fedcba9876543210fedcba98"
VERSION_LABEL = "org.opencontainers.image.version"


@pytest.fixture
def namespace() -> str:
    return f"r{uuid.uuid4().hex[:10]}"


def publish_tested(
    registry: RegistryServer, namespace: str, *, revision: str = SHA
) -> dict[str, str]:
    """main-sha-0123456 of broker and agent (no UI repository), built from `revision`."""
    digests = {}
    for component in ("broker", "agent"):
        digests[component] = push_image(
            registry.base_url,
            f"{namespace}/brokkr-{component}",
            ["main", "main-sha-0123456"],
            seed=f"{component}-{revision}",
            labels={REVISION_LABEL: revision, VERSION_LABEL: "main-sha-0123456"},
        )
    return digests


async def test_promote_releases_the_tested_image_without_a_build(
    brokkr: ModuleCaller, engine: StandInEngine, registry: RegistryServer, namespace: str
):
    digests = publish_tested(registry, namespace)
    key = _signing.SigningKey(ec.generate_private_key(ec.SECP256R1()))
    await supply_chain(f"{registry.registry}/{namespace}/brokkr-broker", digests["broker"], key)
    push_image(
        registry.base_url,
        f"{namespace}/brokkr-broker",
        ["1.0.0", "1.0", "1", "latest"],
        seed="old-release",
    )
    out = await brokkr.call(
        "promote",
        **{"from": "main-sha-0123456"},
        ref="refs/tags/v1.2.3",
        sha=SHA,
        registry=f"{registry.registry}/{namespace}",
    )
    broker = tags_of(registry, f"{namespace}/brokkr-broker")
    for tag in ("1.2.3", "1.2", "1", "latest"):
        assert broker[tag] == digests["broker"]
        assert f"{registry.registry}/{namespace}/brokkr-broker:{tag}@{digests['broker']}" in out
    assert broker["1.0.0"] != digests["broker"]  # the old release keeps its immutable tag
    agent = tags_of(registry, f"{namespace}/brokkr-agent")
    assert agent["1.2.3"] == digests["agent"]
    assert "brokkr-ui: no such repository, skipped" in out
    assert ": SBOM attached, signed" in out  # the broker's SBOMs and signatures still apply
    assert f"# index {digests['broker']}: signed" in out
    # No build, no push through the engine: nothing was evaluated.
    assert not [field for field, *_ in engine.evaluated if field in ("sync", "publish")]
    # A re-run is idempotent: 1.2.3 already names this very image.
    again = await brokkr.call(
        "promote",
        **{"from": "main-sha-0123456"},
        ref="refs/tags/v1.2.3",
        sha=SHA,
        registry=f"{registry.registry}/{namespace}",
    )
    assert again.splitlines()[0].endswith(digests["broker"])


async def test_promote_refuses_an_image_of_another_commit(
    brokkr: ModuleCaller, registry: RegistryServer, namespace: str
):
    publish_tested(registry, namespace, revision=OTHER)
    before = tags_of(registry, f"{namespace}/brokkr-broker")
    with pytest.raises(FunctionError, match=f"was built from commit {OTHER}, not {SHA}"):
        await brokkr.call(
            "promote",
            **{"from": "main-sha-0123456"},
            ref="refs/tags/v1.2.3",
            sha=SHA,
            registry=f"{registry.registry}/{namespace}",
        )
    assert tags_of(registry, f"{namespace}/brokkr-broker") == before


async def test_promote_never_moves_backwards_and_never_overwrites_a_release(
    brokkr: ModuleCaller, registry: RegistryServer, namespace: str
):
    digests = publish_tested(registry, namespace)
    newer = push_image(
        registry.base_url,
        f"{namespace}/brokkr-broker",
        ["2.0.0", "2.0", "2", "latest"],
        seed="newer",
    )
    out = await brokkr.call(
        "promote",
        **{"from": f"{registry.registry}/{namespace}/brokkr-broker:main-sha-0123456"},
        ref="refs/tags/v1.2.4",
        sha=SHA,
        registry="ignored.example/x",
    )
    broker = tags_of(registry, f"{namespace}/brokkr-broker")
    assert broker["1.2.4"] == broker["1.2"] == broker["1"] == digests["broker"]
    assert broker["latest"] == broker["2"] == newer  # latest does not move back to 1.2.4
    assert ":latest@" not in out
    assert "brokkr-agent" not in out  # the address named one component
    # 2.0.0 exists as another image: promoting to it is refused before any push.
    with pytest.raises(FunctionError, match="refusing to overwrite immutable tags"):
        await brokkr.call(
            "promote",
            **{"from": "main-sha-0123456"},
            ref="refs/tags/v2.0.0",
            sha=SHA,
            registry=f"{registry.registry}/{namespace}",
        )
    assert tags_of(registry, f"{namespace}/brokkr-broker")["2.0.0"] == newer
    assert "2.0.0" not in tags_of(registry, f"{namespace}/brokkr-agent")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"ref": "refs/heads/main"}, "must be a git tag"),
        ({"sha": ""}, "--sha is required"),
        ({"from": "bad tag!"}, "neither a tag nor an image address"),
        ({"from": "127.0.0.1:9/x/other:main"}, "not one of Brokkr's repositories"),
    ],
)
async def test_promote_checks_its_inputs_first(
    brokkr: ModuleCaller, engine: StandInEngine, args: dict, message: str
):
    call = {
        "from": "main-sha-0123456",
        "ref": "refs/tags/v1.2.3",
        "sha": SHA,
        "registry": "127.0.0.1:9/x",
        **args,
    }
    with pytest.raises(FunctionError, match=message):
        await brokkr.call("promote", **call)
