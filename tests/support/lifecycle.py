"""What the prune and promote tests share: a supply chain on a pushed image, and a
repository's tags as the registry resolves them."""

from __future__ import annotations

import json

import httpx

from ci.registry import referrers as _referrers
from ci.registry.client import RegistryClient
from ci.rules.reference import parse_repository
from ci.supply_chain import signing as _signing
from tests.support.registry_server import RegistryServer

ACCEPT = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json"


async def supply_chain(address: str, digest: str, key: _signing.SigningKey) -> None:
    """What publish writes: an SBOM on each platform manifest (on docker-registry, which
    has no referrers API, through `sha256-<hex>` fallback tags) and a cosign signature
    on each platform manifest and on the index (`sha256-<hex>.sig`)."""
    repository = parse_repository(address)
    async with RegistryClient() as client:
        index = await client.get_manifest(repository.with_digest(digest))
        children = [m["digest"] for m in index.document["manifests"]]
        for child in children:
            await _referrers.attach(
                client,
                repository,
                child,
                json.dumps({"sbom": child}).encode(),
                artifact_type="application/vnd.cyclonedx+json",
            )
        for manifest in [*children, digest]:
            await _signing.sign_manifest(
                client, repository, manifest, key, created="2026-01-01T00:00:00Z"
            )


def tags_of(registry: RegistryServer, repository: str) -> dict[str, str]:
    """Every tag of `repository` → the digest the registry resolves it to now."""
    listing = httpx.get(f"{registry.base_url}/v2/{repository}/tags/list").json()
    found = {}
    for tag in listing.get("tags") or []:
        reply = httpx.head(
            f"{registry.base_url}/v2/{repository}/manifests/{tag}", headers={"Accept": ACCEPT}
        )
        found[tag] = reply.headers["docker-content-digest"]
    return found
