"""`--registry-service`: reach a loopback registry address through a Dagger service.

Module code runs in a container inside the engine, so `localhost:5000` in an
address is that container, not the machine the Dagger CLI runs on. A registry
on the CLI's machine is handed in as a service instead (`--registry-service
tcp://localhost:5000`), and both ways the module talks to registries use it:

- the engine's pushes (`Container.publish`) get it as `registryService`; the
  engine then dials the service for the address's host, keeping the address
  itself (port, `Host`, credentials) as written;
- the module's own registry client (tag lists, read-back, SBOM referrers,
  signatures, `inspect`, `verify`) connects to the service's endpoint for
  that one registry (`RegistryClient(connect_to=…)`), again keeping the
  address in URLs, auth scopes and messages.

Only loopback addresses (`localhost`, `127.0.0.0/8`, `[::1]`) may name a
service. For them both sides agree to speak plain HTTP (the engine's
containerd resolver only does for loopback), no certificate has to match a
name the service does not carry, and a registry service can never capture
the traffic or the credentials meant for a real registry such as ghcr.io.

How Dagger v0.21.8 does it, from its source:

- cmd/dagger/flags.go (serviceValue.Get): a `tcp://host:port` argument is
  `Address(…).Service().Start()`; core/schema/address.go (service) makes that
  `Host.service` forwarding the same port (frontend = backend = port) to the
  CLI's own `host:port`.
- core/schema/container.go (publish) and core/container.go
  (ContainerRegistryServiceBinding, ContainerRegistryNetwork): a
  `registryService` is started for the push and the address's host name
  (without port) is aliased to the service's hostname;
  engine/sources/netconfhttp/transport.go (NewDialTransportWithHostAliases)
  replaces only the TCP dial target, keeping the port, `Host` and TLS name;
  engine/server/resolver/resolver.go uses plain HTTP for localhost
  (`docker.WithPlainHTTP(docker.MatchLocalhost)`).
- core/schema/service.go (start, endpoint) and core/service.go (Endpoint,
  Hostname): `start` is idempotent for a running service (a host service is
  shared by the session, so the one the CLI started is reused), and
  `endpoint(port:)` is `<service hostname>:<port>`; the hostname resolves in
  every exec, the module's too, through the session's DNS search domain
  (engine/engineutil/executor_spec.go adds network.SessionDomain).
"""

from __future__ import annotations

import dagger

from ci.errors import BrokkrError, first_line
from ci.rules.reference import ConnectTo, ImageReference, is_loopback_host

__all__ = ["check", "connect_to"]

_DEFAULT_HTTP_PORT = 80


def check(ref: ImageReference, service: dagger.Service | None) -> None:
    """Refuse `--registry-service` with an address whose registry is not loopback.

    `ref` is the image or repository the user named (`localhost:5000/org/name[:tag]`).

    Nothing is started or read: this runs with the other input checks.
    """
    if service is None:
        return
    if not is_loopback_host(ref.host):
        msg = (
            f"--registry-service needs a loopback registry address (localhost:<port>/…, "
            f"127.0.0.1:<port>/… or [::1]:<port>/…), got {ref.registry} in {str(ref)!r}: the "
            "service stands for that address, which the engine and the module then reach in "
            "plain HTTP. Drop --registry-service for a registry the engine can reach by name"
        )
        raise BrokkrError(msg)


def _port(ref: ImageReference) -> int:
    """The address's port; a loopback registry without one is plain HTTP's 80."""
    if ref.registry.startswith("["):
        rest = ref.registry[ref.registry.index("]") + 1 :]
        return int(rest[1:]) if rest.startswith(":") else _DEFAULT_HTTP_PORT
    _, colon, port = ref.registry.rpartition(":")
    return int(port) if colon else _DEFAULT_HTTP_PORT


def _parse_endpoint(endpoint: str, registry: str) -> tuple[str, int]:
    host, colon, port = endpoint.strip().rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isascii() or not port.isdigit():
        msg = f"--registry-service for {registry} has no usable endpoint ({endpoint[:100]!r})"
        raise BrokkrError(msg)
    number = int(port)
    if not 0 < number < 65536:
        msg = f"--registry-service for {registry} has an endpoint port out of range ({number})"
        raise BrokkrError(msg)
    return host, number


async def connect_to(ref: ImageReference, service: dagger.Service | None) -> ConnectTo:
    """What the module's registry client connects to instead of `ref`'s registry.

    `{}` without a service. Otherwise the service is started (a no-op when the
    CLI already started it) and asked for its endpoint on the address's own
    port, the port the engine's pushes dial on the service too:
    `{"localhost:5000": ("<service hostname>", 5000)}`.
    """
    if service is None:
        return {}
    check(ref, service)
    port = _port(ref)
    try:
        started = await service.start()
        endpoint = await started.endpoint(port=port)
    except dagger.QueryError as e:
        msg = f"--registry-service for {ref.registry} could not be started: {first_line(e)[:300]}"
        raise BrokkrError(msg) from None
    return {ref.registry: _parse_endpoint(endpoint, ref.registry)}
