"""Brokkr's reference sizes (ci.rules.sizes), as its v0.9.1 documentation gives them."""

import pytest

from ci.rules.sizes import REFERENCE_MB, reference_size


@pytest.mark.parametrize(
    ("address", "platform", "expected"),
    [
        ("ghcr.io/colliery-io/brokkr-broker:1.2.3", "linux/amd64", "~60 MB"),
        ("ghcr.io/colliery-io/brokkr-broker:1.2.3", "linux/arm64", "~58 MB"),
        ("localhost:5000/brokkr/brokkr-agent:main", "linux/amd64", "~65 MB"),
        ("localhost:5000/brokkr/brokkr-agent@sha256:" + "a" * 64, "linux/arm64/v8", "~62 MB"),
        ("ghcr.io/me/brokkr-ui:pr-4", "linux/amd64", "~40 MB"),
        ("ghcr.io/me/brokkr-ui", "linux/arm64", "~38 MB"),
    ],
)
def test_each_component_and_architecture_has_brokkrs_figure(address, platform, expected):
    assert reference_size(address, platform) == expected


@pytest.mark.parametrize(
    ("address", "platform"),
    [
        ("ghcr.io/colliery-io/brokkr-broker:1", "linux/arm/v7"),
        ("ghcr.io/colliery-io/brokkr-cli:1", "linux/amd64"),
        ("ghcr.io/colliery-io/not-brokkr-broker:1", "linux/amd64"),
        ("not an address", "linux/amd64"),
        ("ghcr.io/colliery-io/brokkr-broker:1", "amd64"),
    ],
)
def test_anything_else_has_no_reference(address, platform):
    assert reference_size(address, platform) is None


def test_the_table_is_brokkrs_six_figures():
    assert dict(REFERENCE_MB) == {
        ("brokkr-broker", "amd64"): 60,
        ("brokkr-broker", "arm64"): 58,
        ("brokkr-agent", "amd64"): 65,
        ("brokkr-agent", "arm64"): 62,
        ("brokkr-ui", "amd64"): 40,
        ("brokkr-ui", "arm64"): 38,
    }
