"""The Dagger-facing inspection types, the size table, and credentials from secrets."""

import pytest
from dagger.mod._utils import get_doc

from ci.access import RegistryAccess, credentials_from
from ci.errors import BrokkrError
from ci.inputs import LOGIN_RULE
from ci.publishing.inspection import (
    ImageInfo,
    PlatformImage,
    format_megabytes,
    image_info,
    inspect_address,
    repository_tags,
    size_table,
)
from ci.registry.client import OCI_INDEX, Credentials, ImageDescription, PlatformDescription
from ci.rules.reference import parse_reference, parse_repository
from tests.support.registry_server import AUTH_PASSWORD, AUTH_USERNAME, RegistryServer, push_image

DIGEST_A = "sha256:" + "a" * 64
DIGEST_B = "sha256:" + "b" * 64
DIGEST_C = "sha256:" + "c" * 64


def sample_info() -> ImageInfo:
    return ImageInfo(
        address="ghcr.io/colliery-io/brokkr-broker:1.2.3",
        digest=DIGEST_A,
        media_type=OCI_INDEX,
        platforms=[
            PlatformImage(platform="linux/amd64", digest=DIGEST_B, size=28_449_999),
            PlatformImage(platform="linux/arm64/v8", digest=DIGEST_C, size=950_000),
        ],
    )


@pytest.mark.parametrize(
    ("size", "text"),
    [
        (0, "0.0 MB"),
        (49_999, "0.0 MB"),
        (50_001, "0.1 MB"),
        (28_449_999, "28.4 MB"),
        (10**9, "1000.0 MB"),
    ],
)
def test_format_megabytes(size, text):
    assert format_megabytes(size) == text


def test_size_table_has_one_row_per_platform():
    assert size_table(sample_info()) == (
        "| Image | Platform | Compressed size |\n"
        "|---|---|---|\n"
        "| ghcr.io/colliery-io/brokkr-broker:1.2.3 | linux/amd64 | 28.4 MB |\n"
        "| ghcr.io/colliery-io/brokkr-broker:1.2.3 | linux/arm64/v8 | 0.9 MB |\n"
    )


def test_size_table_with_brokkrs_reference_sizes_beside_each_figure():
    assert size_table(sample_info(), reference=True) == (
        "| Image | Platform | Compressed size | Brokkr's reference |\n"
        "|---|---|---|---|\n"
        "| ghcr.io/colliery-io/brokkr-broker:1.2.3 | linux/amd64 | 28.4 MB | ~60 MB |\n"
        "| ghcr.io/colliery-io/brokkr-broker:1.2.3 | linux/arm64/v8 | 0.9 MB | ~58 MB |\n"
    )


def test_summary_is_a_readable_table():
    assert sample_info().summary() == (
        "address:    ghcr.io/colliery-io/brokkr-broker:1.2.3\n"
        f"digest:     {DIGEST_A}\n"
        f"media type: {OCI_INDEX}\n"
        "signature:  no\n"
        "\n"
        "PLATFORM           SIZE  SBOM  SIGNATURE  DIGEST\n"
        f"linux/amd64     28.4 MB  no    no         {DIGEST_B}\n"
        f"linux/arm64/v8   0.9 MB  no    no         {DIGEST_C}\n"
    )


def test_summary_says_what_has_an_sbom_and_a_signature():
    info = sample_info()
    info.signature = True
    info.platforms[0].sbom = True
    info.platforms[1].signature = True
    lines = info.summary().splitlines()
    assert lines[3] == "signature:  yes"
    assert lines[6] == f"linux/amd64     28.4 MB  yes   no         {DIGEST_B}"
    assert lines[7] == f"linux/arm64/v8   0.9 MB  no    yes        {DIGEST_C}"


def test_image_info_from_a_description():
    ref = parse_reference(f"ghcr.io/org/name:1@{DIGEST_A}")
    description = ImageDescription(
        ref, DIGEST_A, OCI_INDEX, (PlatformDescription("linux/amd64", DIGEST_B, 123),)
    )
    info = image_info(description)
    assert info.address == f"ghcr.io/org/name:1@{DIGEST_A}"
    assert (info.digest, info.media_type) == (DIGEST_A, OCI_INDEX)
    assert info.platforms == [PlatformImage(platform="linux/amd64", digest=DIGEST_B, size=123)]
    assert info.signature is False
    marked = image_info(description, {DIGEST_B: True}, {DIGEST_A: True, DIGEST_B: False})
    assert marked.signature is True
    assert marked.platforms == [
        PlatformImage(platform="linux/amd64", digest=DIGEST_B, size=123, sbom=True)
    ]


@pytest.mark.parametrize(
    ("cls", "fields"),
    [
        (ImageInfo, {"address", "digest", "media_type", "platforms", "signature"}),
        (PlatformImage, {"platform", "digest", "size", "sbom", "signature"}),
    ],
)
def test_the_types_are_dagger_objects_with_documented_fields(cls, fields):
    definition = cls.__dagger_object_type__
    assert set(definition.fields) == fields
    for name in fields:
        # The description `dagger call … --help` shows for the field.
        assert get_doc(definition.fields[name].return_type), name
    assert get_doc(cls)


def test_summary_is_a_dagger_function():
    assert set(ImageInfo.__dagger_object_type__.functions) == {"summary"}


class FakeSecret:
    """Stands in for dagger.Secret: records whether its plaintext was read."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.reads = 0

    async def plaintext(self) -> str:
        self.reads += 1
        return self.value


async def test_credentials_from_a_secret():
    secret = FakeSecret("ghp_token_value")
    credentials = await credentials_from("octocat", secret)  # type: ignore[arg-type]
    assert credentials == Credentials("octocat", "ghp_token_value")
    assert secret.reads == 1
    assert "ghp_token_value" not in repr(credentials)


async def test_anonymous_when_neither_is_given():
    assert await credentials_from("", None) is None


async def test_username_without_password_and_vice_versa_are_one_rule():
    with pytest.raises(BrokkrError) as caught:
        await credentials_from("octocat", None)
    assert str(caught.value) == LOGIN_RULE
    secret = FakeSecret("ghp_token_value")
    with pytest.raises(BrokkrError) as caught:
        await credentials_from("", secret)  # type: ignore[arg-type]
    assert str(caught.value) == LOGIN_RULE
    assert secret.reads == 0  # not read when it cannot be used
    assert "ghp_token_value" not in str(caught.value)
    with pytest.raises(BrokkrError, match="secret for 'octocat' is empty"):
        await credentials_from("octocat", FakeSecret(""))  # type: ignore[arg-type]


@pytest.mark.registry
async def test_inspect_address_and_tags_against_a_real_registry(registry: RegistryServer):
    digest = push_image(registry.base_url, "brokkr/inspect-me", ["2.0.0", "2.0", "latest"])
    info = await inspect_address(
        parse_reference(registry.address("brokkr/inspect-me", "2.0")), RegistryAccess()
    )
    assert info.address == registry.address("brokkr/inspect-me", "2.0")
    assert info.digest == digest
    assert [p.platform for p in info.platforms] == ["linux/amd64", "linux/arm64"]
    assert "linux/arm64" in info.summary()
    assert size_table(info).count("\n") == 4
    tags = await repository_tags(
        parse_repository(registry.address("brokkr/inspect-me")), RegistryAccess()
    )
    assert tags == ["2.0", "2.0.0", "latest"]


@pytest.mark.registry
async def test_inspect_address_with_credentials(auth_registry: RegistryServer):
    digest = push_image(
        auth_registry.base_url, "brokkr/inspect-private", "1", auth=auth_registry.auth
    )
    credentials = await credentials_from(AUTH_USERNAME, FakeSecret(AUTH_PASSWORD))  # type: ignore[arg-type]
    ref = parse_reference(auth_registry.address("brokkr/inspect-private", "1"))
    info = await inspect_address(ref, RegistryAccess(credentials=credentials))
    assert info.digest == digest
    with pytest.raises(BrokkrError, match="authentication required"):
        await inspect_address(ref, RegistryAccess())
