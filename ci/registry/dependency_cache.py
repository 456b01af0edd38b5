"""Looking up a cooked dependency layer in the registry (the dependency cache).

A cache image is an OCI image manifest (never an index) under
`<cache repository>:deps-<platform>-<key>` (`ci.rules.cache_key`). `lookup`
reads it and decides whether the build may use it; what it returns is the
image's digest, which is all the engine is then given: the image is used by
digest, so a tag moved after the lookup changes nothing.

An image is used only when its manifest is an image manifest, its config's
platform is the build platform of the cook, and its labels carry the key and
the content this module's cache images have. Anything else — another
platform, another key, missing labels, no layer, an unreadable answer, a
registry that refuses the login — is a miss with a note saying why, and the
cook runs as without a cache. A plain absence (404) is a miss without a note.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from ci.errors import BrokkrError
from ci.registry.client import RegistryClient
from ci.rules import cache_key as _key
from ci.rules.reference import ImageReference

LOOKUP_SECONDS = 60.0
"""One deadline for every lookup of one publish or build (the cache never holds a build up)."""


@dataclass(frozen=True)
class Lookup:
    """The answer for one key: `digest` on a hit; on a miss `note` may say why."""

    tag: str
    digest: str | None = None
    note: str = ""

    @property
    def hit(self) -> bool:
        return self.digest is not None


def _platform(config: dict[str, object]) -> str:
    parts = [config.get("os"), config.get("architecture")]
    if config.get("variant"):
        parts.append(config.get("variant"))
    return "/".join(str(p) for p in parts)


async def lookup(
    client: RegistryClient,
    repository: ImageReference,
    *,
    key: str,
    target_platform: str,
    build_platform: str,
) -> Lookup:
    """Look `key` up in `repository` (see the module docstring); never raises a BrokkrError."""
    tag = _key.cache_tag(target_platform, key)
    ref = repository.with_tag(tag)
    try:
        manifest = await client.fetch_manifest_or_none(ref)
        if manifest is None:
            return Lookup(tag)
        if manifest.is_index:
            return Lookup(tag, note=f"{ref.name}:{tag} is an index, not a cache image; ignored")
        config = manifest.document.get("config")
        layers = manifest.document.get("layers")
        if not isinstance(config, dict) or not isinstance(layers, list) or not layers:
            return Lookup(tag, note=f"{ref.name}:{tag} has no layers or no config; ignored")
        blob = await client.get_blob(ref, str(config.get("digest")), config.get("size"))
        document = json.loads(blob)
        platform = _platform(document)
        if platform != build_platform:
            return Lookup(
                tag,
                note=(
                    f"{ref.name}:{tag} was cooked on {platform}, this build cooks on "
                    f"{build_platform}; ignored"
                ),
            )
        labels = (document.get("config") or {}).get("Labels") or {}
        expected = _key.cache_labels(key, build_platform)
        wrong = sorted(name for name, value in expected.items() if labels.get(name) != value)
        if wrong:
            return Lookup(
                tag,
                note=f"{ref.name}:{tag} lacks the expected content ({', '.join(wrong)}); ignored",
            )
        return Lookup(tag, digest=manifest.digest)
    except BrokkrError as e:
        return Lookup(tag, note=f"could not read {ref.name}:{tag} ({e}); cooking instead")
    except (ValueError, TypeError, AttributeError):
        return Lookup(tag, note=f"{ref.name}:{tag} has an unreadable config; ignored")
