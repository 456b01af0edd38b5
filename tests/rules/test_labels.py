"""OCI labels (ci.rules.labels): what users and GHCR read off a published image."""

import pytest

from ci.errors import BrokkrError
from ci.rules.components import Component, component_spec
from ci.rules.labels import (
    DEFAULT_SOURCE_URL,
    EPOCH,
    LICENSE,
    REVISION_LABEL,
    image_labels,
    validate_created,
    validate_source_url,
)


@pytest.mark.parametrize(
    "url",
    [
        DEFAULT_SOURCE_URL,
        "https://github.com/someone/brokkr-fork",
        "https://gitlab.example.com/group/brokkr.git",
    ],
)
def test_https_source_urls_are_accepted(url):
    assert validate_source_url(url) == url


@pytest.mark.parametrize(
    "url",
    [
        "http://github.com/colliery-io/brokkr",
        "github.com/colliery-io/brokkr",
        "https://",
        "https://github.com/colliery-io/brokkr with-space",
        'https://github.com/colliery-io/"brokkr"',
        " https://github.com/colliery-io/brokkr",
        "",
    ],
)
def test_a_bad_source_url_is_refused_naming_the_flag_and_value(url):
    with pytest.raises(BrokkrError) as caught:
        validate_source_url(url)
    assert str(caught.value) == (
        f"--source-url must be an https:// URL of the repository, got {url!r}"
    )


@pytest.mark.parametrize(
    "created",
    ["2025-12-13T22:17:02-05:00", "2026-11-26T22:53:05Z", "2026-11-26T22:53:05.123+00:00"],
)
def test_commit_times_are_kept_as_given(created):
    assert validate_created(created) == created


def test_no_commit_time_means_the_epoch_not_the_clock():
    assert validate_created("") == EPOCH == "1970-01-01T00:00:00Z"


@pytest.mark.parametrize(
    "created", ["2026-11-26", "2026-11-26T22:53:05", "yesterday", "2026-13-01T00:00:00Z"]
)
def test_a_bad_commit_time_is_refused_naming_the_flag_and_value(created):
    with pytest.raises(BrokkrError) as caught:
        validate_created(created)
    message = str(caught.value)
    assert message.startswith("--created must be an RFC 3339 timestamp with a time zone")
    assert message.endswith(f"got {created!r}")


def test_labels_of_an_image():
    spec = component_spec(Component.AGENT)
    labels = image_labels(
        spec,
        revision="1e69e30111a0809a44af6aac5d0ee2c7507bf1a6",
        version="1.2.3",
        created="2025-12-13T22:17:02-05:00",
    )
    assert labels == {
        "org.opencontainers.image.source": DEFAULT_SOURCE_URL,
        REVISION_LABEL: "1e69e30111a0809a44af6aac5d0ee2c7507bf1a6",
        "org.opencontainers.image.version": "1.2.3",
        "org.opencontainers.image.created": "2025-12-13T22:17:02-05:00",
        "org.opencontainers.image.title": "brokkr-agent",
        "org.opencontainers.image.description": spec.description,
        "org.opencontainers.image.licenses": LICENSE,
    }
    assert REVISION_LABEL == "org.opencontainers.image.revision"
    assert LICENSE == "Elastic-2.0"


def test_labels_default_to_the_epoch_and_brokkrs_repository():
    labels = image_labels(component_spec(Component.UI), revision="0123456", version="main")
    assert labels["org.opencontainers.image.created"] == EPOCH
    assert labels["org.opencontainers.image.source"] == "https://github.com/colliery-io/brokkr"
