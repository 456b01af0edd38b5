"""What the publish tests share (fixtures registered in conftest.py).

The stand-in engine's `publish` pushing to the loopback registry (its images
answering the SBOM's reads), a fresh `--registry` namespace there, retries
without their delays, and fresh EC P-256 signing keys.
"""

import uuid

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from ci.build import push as _push
from ci.publishing import readback as _readback
from ci.rules.cache_key import KEY_LABEL
from tests.support.registry_server import RegistryServer
from tests.support.sbom_inputs import answer_image_reads
from tests.support.standin import Node, Push, StandInEngine, push_to_registry

RECIPE = '{"skeleton": {"manifests": []}, "recipe": "fixture"}'
"""What the stand-in's cargo-chef planner leaves in /app/recipe.json."""


@pytest.fixture
def no_waiting(monkeypatch: pytest.MonkeyPatch) -> None:
    """Push and read-back retries without the delays between them."""
    monkeypatch.setattr(_push, "RETRY_DELAY", 0.0)
    monkeypatch.setattr(_readback, "READ_BACK_DELAY", 0.0)


@pytest.fixture
def namespace(registry: RegistryServer) -> str:
    """A fresh `--registry` namespace in the loopback registry, for this test alone."""
    return f"{registry.registry}/t{uuid.uuid4().hex[:10]}"


def publish_to(engine: StandInEngine, registry: RegistryServer) -> StandInEngine:
    """Set `engine` up to publish to `registry` (no login attached; see `publishing`)."""
    answer_image_reads(engine)
    engine.container_files["/app/recipe.json"] = RECIPE
    engine.on_publish = push_to_registry(
        engine, registry=registry.registry, base_url=registry.base_url
    )
    return engine


@pytest.fixture
def publishing(engine: StandInEngine, registry: RegistryServer) -> StandInEngine:
    """The stand-in engine, its `publish` really pushing to the loopback registry.

    The built images answer the SBOM's reads (`answer_image_reads`): publish
    attaches SBOMs to a loopback registry without a login.
    """
    return publish_to(engine, registry)


def pem_pair() -> tuple[str, bytes]:
    """A fresh EC P-256 key: (private PKCS#8 PEM, public PEM)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private, public


def is_cache_image(container: Node) -> bool:
    """Whether a pushed container is a dependency-cache image (it carries the key label)."""
    return any(n.args["name"] == KEY_LABEL for n in container.calls("withLabel"))


def image_pushes(engine: StandInEngine) -> list[Push]:
    """The engine's pushes of images, without the dependency cache's pushes."""
    return [p for p in engine.pushes if not is_cache_image(p.container)]
