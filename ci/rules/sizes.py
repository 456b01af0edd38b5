"""Brokkr's reference image sizes: what its documentation says each image weighs.

Brokkr's reference (``docs/src/reference/container-images.md`` at v0.9.1,
"Image Size Reference") gives approximate compressed sizes per component and
architecture. ``sizes --reference`` prints them beside the measured figures,
so a published image that grew (or a stage that lost its slimming) shows up
where people look: the run summary of the publish workflow and the engine job
of this repository's CI.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ci.errors import BrokkrError
from ci.rules.reference import parse_reference

__all__ = ["REFERENCE_MB", "REFERENCE_SOURCE", "reference_size"]

REFERENCE_SOURCE = "Brokkr's docs (reference/container-images.md, v0.9.1)"
"""Where the reference figures come from, as the table's column says."""

REFERENCE_MB: Mapping[tuple[str, str], int] = MappingProxyType(
    {
        ("brokkr-broker", "amd64"): 60,
        ("brokkr-broker", "arm64"): 58,
        ("brokkr-agent", "amd64"): 65,
        ("brokkr-agent", "arm64"): 62,
        ("brokkr-ui", "amd64"): 40,
        ("brokkr-ui", "arm64"): 38,
    }
)
"""(image name, architecture) -> approximate compressed size in MB (10^6 bytes)."""


def reference_size(address: str, platform: str) -> str | None:
    """Brokkr's reference size for an image address and platform (``~60 MB``), or None.

    The image is recognised by the last segment of its repository
    (``…/brokkr-broker``), whatever the registry and tag; the platform by its
    architecture (``linux/arm64/v8`` is ``arm64``). Anything else has no
    reference.
    """
    try:
        repository = parse_reference(address).repository
    except BrokkrError:
        return None
    name = repository.rsplit("/", 1)[-1]
    parts = platform.split("/")
    arch = parts[1] if len(parts) > 1 else ""
    size = REFERENCE_MB.get((name, arch))
    return None if size is None else f"~{size} MB"
