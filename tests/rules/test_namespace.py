"""`--registry` parsed once into a `Namespace`; each component's repository derived from it."""

import pytest

from ci.errors import BrokkrError
from ci.rules.components import Component
from ci.rules.namespace import parse_namespace


@pytest.mark.parametrize(
    ("value", "registry", "broker"),
    [
        ("ghcr.io/colliery-io", "ghcr.io", "ghcr.io/colliery-io/brokkr-broker"),
        (" ghcr.io/colliery-io/ ", "ghcr.io", "ghcr.io/colliery-io/brokkr-broker"),
        ("localhost:5000", "localhost:5000", "localhost:5000/brokkr-broker"),
        ("localhost:5000/a/b", "localhost:5000", "localhost:5000/a/b/brokkr-broker"),
        ("[::1]:5000/t", "[::1]:5000", "[::1]:5000/t/brokkr-broker"),
        ("myorg", "docker.io", "docker.io/myorg/brokkr-broker"),
    ],
)
def test_a_namespace_gives_each_components_repository(value: str, registry: str, broker: str):
    namespace = parse_namespace(value)
    assert namespace.registry == registry
    assert namespace.repository(Component.BROKER).name == broker
    assert str(namespace) == value.strip().rstrip("/")
    ui = namespace.repository(Component.UI)
    assert ui.name == broker.removesuffix("brokkr-broker") + "brokkr-ui"
    assert ui.tag is None
    assert ui.digest is None


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", r"--registry must be a registry and namespace .* got ''"),
        ("ghcr.io/org:1.0", "no tag or digest"),
        ("ghcr.io/org@sha256:" + "a" * 64, "no tag or digest"),
        ("ghcr.io/Colliery", r"--registry 'ghcr.io/Colliery' is not a usable .* lowercase"),
        ("https://ghcr.io/org", "--registry"),
        ("ghcr.io/" + "a" * 250, "longer than 255"),
    ],
)
def test_a_bad_namespace_is_one_clear_error(value: str, message: str):
    with pytest.raises(BrokkrError, match=message):
        parse_namespace(value)


def test_the_namespace_knows_its_host_for_the_loopback_rule():
    assert parse_namespace("localhost:5000/t").host == "localhost"
    assert parse_namespace("ghcr.io/org").host == "ghcr.io"
