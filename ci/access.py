"""How the module reaches one registry: the login and the route, as one value.

`ci.main` makes a `RegistryAccess` once from --username, --password and
--registry-service, for the registry of the address (or namespace) the user
named, and hands it down: the engine's pushes take the login as a secret and
the service; the module's own registry client takes the login in plaintext
and the service's endpoint. Nothing below re-checks or re-reads them.

Rule: may import `ci.errors`, `ci.concurrency`, `ci.inputs`, `ci.rules`,
`ci.build` (the service) and `ci.registry`; imported by `ci.supply_chain`,
`ci.dependency_cache`, `ci.publishing` and `ci.main`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import dagger

from ci.build import service as _service
from ci.errors import BrokkrError
from ci.inputs import check_login, read_secret
from ci.registry.client import Credentials, RegistryClient
from ci.rules.reference import ConnectTo, ImageReference


@dataclass(frozen=True)
class RegistryAccess:
    """The login and the route to one registry (anonymous and direct by default)."""

    username: str = ""
    password: dagger.Secret | None = field(default=None, repr=False)
    """The login for the engine's pushes, as a secret; without it the engine uses the
    Docker login the Dagger CLI forwards."""
    credentials: Credentials | None = None
    """The same login in plaintext, for the module's own registry client; None: anonymous."""
    service: dagger.Service | None = None
    """`--registry-service`, which the engine's pushes dial instead of the registry."""
    connect_to: ConnectTo = field(default_factory=dict)
    """Where the module's registry client dials instead (`{}` without a service)."""

    def client(self, **options: Any) -> RegistryClient:
        """The module's registry client with this login and route (`options`: the rest of
        `RegistryClient`'s, such as `anonymous_hint`)."""
        return RegistryClient(credentials=self.credentials, connect_to=self.connect_to, **options)


async def credentials_from(username: str, password: dagger.Secret | None) -> Credentials | None:
    """Registry credentials from a username and a Dagger secret; None for anonymous.

    Both or neither (`check_login`); the secret's plaintext is read only when
    one is given, and an empty one is an error.
    """
    check_login(username, password)
    if password is None:
        return None
    plaintext = await read_secret(password, "--password")
    if not plaintext:
        raise BrokkrError(f"the password secret for {username!r} is empty")
    return Credentials(username, plaintext)


async def registry_access(
    ref: ImageReference,
    username: str,
    password: dagger.Secret | None,
    service: dagger.Service | None,
) -> RegistryAccess:
    """The login and the route to `ref`'s registry.

    In this order: `--registry-service` is checked against the registry
    (nothing read or started), the login rule is checked and the password
    secret read (`credentials_from`), then the service is started and asked
    for its endpoint (`_service.connect_to`).
    """
    _service.check(ref, service)
    credentials = await credentials_from(username, password)
    connect_to = await _service.connect_to(ref, service)
    return RegistryAccess(username, password, credentials, service, connect_to)
