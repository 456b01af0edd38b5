"""Pushing one multi-platform image to one address, with bounded retries.

Shared by `Image.publish` (one address a user names) and `publish` (every tag
of every component). Credentials travel only as a Dagger `Secret` attached with
`with_registry_auth`; without them the engine uses the Docker login the Dagger
CLI forwards.
"""

import re
from collections.abc import Sequence

import anyio
import dagger

from ci.errors import BrokkrError, first_line
from ci.inputs import check_login
from ci.rules.reference import ImageReference, parse_reference

PUSH_ATTEMPTS = 3
"""How many times one push is tried when the registry fails transiently."""

RETRY_DELAY = 2.0
"""Seconds before the second attempt; doubled before each later one."""

_REFUSED = re.compile(
    r"\b(?:401|403)\b|unauthori[sz]ed|denied|forbidden|authentication required", re.IGNORECASE
)


def check_address(address: str) -> tuple[str, ImageReference]:
    """Check an address to push to (`registry/org/name[:tag]`, no digest); return it
    stripped (as the engine is given it) and parsed."""
    address = address.strip()
    ref = parse_reference(address)
    if ref.digest is not None:
        msg = (
            f"cannot push to a digest ({address}); give a tag, like "
            "ghcr.io/colliery-io/brokkr-broker:1.2.3"
        )
        raise BrokkrError(msg)
    return address, ref


def with_auth(
    container: dagger.Container,
    repository: ImageReference,
    *,
    username: str,
    password: dagger.Secret | None,
) -> dagger.Container:
    """Attach `username`/`password` for pushes to `repository` (both or neither,
    `check_login`); any tag of it names the same repository."""
    check_login(username, password)
    if password is None:
        return container
    return container.with_registry_auth(repository.name, username, password)


async def push(
    container: dagger.Container,
    variants: Sequence[dagger.Container],
    address: str,
    *,
    registry_service: dagger.Service | None = None,
) -> str:
    """Push `container` with its platform `variants` to `address`; return `address@sha256:…`.

    With `registry_service` the engine reaches `address`'s registry through that
    service (`--registry-service`, see `_service`). Transient failures are
    retried `PUSH_ATTEMPTS` times with backoff; a refused login is not retried.
    Errors are `BrokkrError`s naming the address.
    """
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        try:
            return await container.publish(
                address, platform_variants=list(variants), registry_service=registry_service
            )
        except dagger.QueryError as e:
            reason = first_line(e)
            if _REFUSED.search(reason):
                msg = f"the registry refused {address}: {reason} (check --username/--password)"
                raise BrokkrError(msg) from None
            if attempt == PUSH_ATTEMPTS:
                msg = f"pushing {address} failed after {attempt} attempts: {reason}"
                raise BrokkrError(msg) from None
            await anyio.sleep(RETRY_DELAY * 2 ** (attempt - 1))
    raise AssertionError("unreachable")  # pragma: no cover
