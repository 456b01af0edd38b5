"""Describing an image: its platforms, their sizes, its labels."""

from __future__ import annotations

from dataclasses import dataclass

from ci.concurrency import run_all
from ci.errors import BrokkrError
from ci.registry.blobs import Blobs
from ci.registry.documents import parse_json
from ci.registry.manifests import (
    INDEX_MEDIA_TYPES,
    Manifest,
    Manifests,
    descriptor_digest,
    descriptor_size,
    is_attestation,
    platform_string,
)
from ci.registry.text import clean
from ci.rules.reference import ImageReference

INDEX_FETCH_CONCURRENCY = 4
"""Platform manifests of one index read at once (each up to the manifest limit)."""


@dataclass(frozen=True)
class PlatformDescription:
    """One platform of an image: ``os/arch[/variant]``, its manifest, its size."""

    platform: str
    digest: str
    size: int
    """Compressed bytes: the config blob plus every layer."""


@dataclass(frozen=True)
class ImageDescription:
    """What ``RegistryClient.inspect`` reports about an address."""

    reference: ImageReference
    digest: str
    media_type: str
    platforms: tuple[PlatformDescription, ...]


class Describe(Manifests, Blobs):
    """Inspection and labels (over manifests and blobs)."""

    async def config_labels(self, ref: ImageReference) -> dict[str, str]:
        """The labels of the image's config (the first platform's, for an index).

        Keys and values are cleaned of control characters (registry text).
        """
        with self.operation(ref.registry, f"reading the labels of {ref}"):
            manifest = await self.get_manifest(ref)
            if manifest.is_index:
                entries = manifest.document.get("manifests")
                if not isinstance(entries, list):
                    raise BrokkrError(f"the index of {ref} has no manifest list")
                wanted = [d for d in entries if isinstance(d, dict) and not is_attestation(d)]
                if not wanted:
                    return {}
                child = descriptor_digest(wanted[0], f"the index of {ref}")
                size = descriptor_size(wanted[0], f"the index of {ref}")
                manifest = await self.get_manifest(ref.with_digest(child), size)
                if manifest.is_index:
                    raise BrokkrError(f"{ref} is an index of indexes, which is not supported")
            where = f"the manifest of {manifest.reference}"
            config = manifest.document.get("config")
            if not isinstance(config, dict):
                raise BrokkrError(f"{where} has no config descriptor")
            blob = await self.get_blob(
                ref, descriptor_digest(config, where), descriptor_size(config, where)
            )
            document = parse_json(blob, f"the config of {ref}", max_values=self._limits.json_values)
            inner = document.get("config")
            if inner is None:
                return {}
            if not isinstance(inner, dict):
                raise BrokkrError(f"the config of {ref} has a 'config' that is not an object")
            labels = inner.get("Labels")
            if labels is None:
                return {}
            if not isinstance(labels, dict) or not all(isinstance(v, str) for v in labels.values()):
                raise BrokkrError(f"the config of {ref} has labels that are not a string map")
            return {clean(k, 256): clean(v, 1024) for k, v in labels.items()}

    async def inspect(self, ref: ImageReference) -> ImageDescription:
        """Describe ``ref``: its digest, media type, and every platform it holds.

        For an index: one entry per platform manifest (attestations, whose
        platform is ``unknown/unknown``, are skipped; an entry repeated with the
        same platform and digest counts once; more than ``limits.index_platforms``
        is an error). For a single manifest: the platform comes from its config
        blob. Sizes are compressed bytes (config plus layers), as listed in the
        manifests; layers are not downloaded.
        """
        with self.operation(ref.registry, f"inspecting {ref}"):
            return await self._inspect(ref)

    async def _inspect(self, ref: ImageReference) -> ImageDescription:
        top = await self.get_manifest(ref)
        if not top.is_index:
            platform = await self._platform_from_config(top)
            return ImageDescription(
                ref, top.digest, top.media_type, (self._describe(top, platform),)
            )
        where = f"the index of {ref}"
        entries = top.document.get("manifests")
        if not isinstance(entries, list):
            raise BrokkrError(f"{where} has no manifest list")
        wanted: dict[tuple[str | None, str], None] = {}
        sizes: dict[str, int] = {}
        for entry in entries:
            if not isinstance(entry, dict) or is_attestation(entry):
                continue
            media_type = entry.get("mediaType")
            if media_type is not None and not isinstance(media_type, str):
                raise BrokkrError(f"{where} has an entry whose mediaType is not a string")
            if media_type in INDEX_MEDIA_TYPES:
                raise BrokkrError(f"{ref} is an index of indexes, which is not supported")
            digest = descriptor_digest(entry, where)
            size = descriptor_size(entry, where)
            if sizes.setdefault(digest, size) != size:
                raise BrokkrError(f"{where} lists {digest} with two different sizes")
            platform = entry.get("platform")
            name = platform_string(platform, where) if isinstance(platform, dict) else None
            wanted[(name, digest)] = None
            if len(wanted) > self._limits.index_platforms:
                raise BrokkrError(
                    f"{where} lists more than {self._limits.index_platforms} platform manifests "
                    "(the limit for one index, after removing duplicates)"
                )
        described: dict[tuple[str | None, str], PlatformDescription] = {}
        needs_config = {digest for name, digest in wanted if name is None}

        async def one(digest: str) -> None:
            child = await self.get_manifest(
                ImageReference(ref.registry, ref.repository, None, digest), sizes[digest]
            )
            from_config = (
                await self._platform_from_config(child) if digest in needs_config else None
            )
            for name, wanted_digest in wanted:
                if wanted_digest == digest:
                    platform = name if name is not None else from_config
                    assert platform is not None
                    described[(name, digest)] = self._describe(child, platform)

        await run_all(
            [lambda d=d: one(d) for d in dict.fromkeys(d for _, d in wanted)],
            limit=INDEX_FETCH_CONCURRENCY,
        )
        return ImageDescription(
            ref, top.digest, top.media_type, tuple(described[key] for key in wanted)
        )

    def _describe(self, manifest: Manifest, platform: str) -> PlatformDescription:
        if manifest.is_index:
            raise BrokkrError(
                f"{manifest.reference} is an index of indexes, which is not supported"
            )
        where = f"the manifest of {manifest.reference}"
        layers = manifest.document.get("layers")
        if not isinstance(layers, list):
            raise BrokkrError(f"{where} has no layer list")
        size = descriptor_size(manifest.document.get("config"), where)
        size += sum(descriptor_size(layer, where) for layer in layers)
        return PlatformDescription(platform, manifest.digest, size)

    async def _platform_from_config(self, manifest: Manifest) -> str:
        where = f"the manifest of {manifest.reference}"
        config = manifest.document.get("config")
        if not isinstance(config, dict):
            raise BrokkrError(f"{where} has no config descriptor")
        blob = await self.get_blob(
            manifest.reference, descriptor_digest(config, where), descriptor_size(config, where)
        )
        document = parse_json(
            blob, f"the config of {manifest.reference}", max_values=self._limits.json_values
        )
        return platform_string(document, f"the config of {manifest.reference}")
