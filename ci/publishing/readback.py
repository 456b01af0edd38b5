"""Reading a pushed component back: every tag must name the pushed index, with every
requested platform (registries may lag behind a write: a few attempts, spaced)."""

from __future__ import annotations

from collections.abc import Sequence

import anyio

from ci.concurrency import run_all
from ci.errors import BrokkrError
from ci.publishing.plan import Target
from ci.registry.client import ImageDescription, RegistryClient
from ci.rules.platforms import parse_platform
from ci.rules.reference import ImageReference
from ci.rules.tags import Tag

VERIFY_ATTEMPTS = 5
"""How many times a pushed tag is read back before its absence is an error."""
READ_BACK_DELAY = 0.5
"""Seconds between read-back attempts, grown by the attempt number (registries may lag)."""


async def verify(
    platforms: Sequence[str],
    target: Target,
    refs: dict[str, str],
    client: RegistryClient,
    tags: Sequence[Tag] | None = None,
) -> list[str]:
    """Read `tags` of `target` back (default: all of them): each must name the pushed index
    with every platform. Every tag of `target` pushed so far (in `refs`) must have been
    pushed as the same image."""
    pushed = [a for t in target.tags if (a := target.address(t.name)) in refs]
    digests = {refs[a].rsplit("@", 1)[1] for a in pushed}
    if len(digests) != 1:
        return [f"{target.repository.name}: the tags were pushed as different images"]
    (expected,) = digests
    problems: list[str] = []

    async def one(tag: Tag) -> None:
        ref = target.repository.with_tag(tag.name)
        described = await _read_back(platforms, client, ref, expected)
        if isinstance(described, str):
            problems.append(f"{target.address(tag.name)}: {described}")
        elif not target.digest:
            target.digest = described.digest
            target.platform_digests = {
                _platform_name(p.platform): p.digest for p in described.platforms
            }

    # One deadline for reading back all of this target's tags (the client's Limits.deadline).
    with client.operation(target.repository.registry, f"reading back {target.repository.name}"):
        await run_all([lambda t=t: one(t) for t in (target.tags if tags is None else tags)])
    return sorted(problems)


async def _read_back(
    platforms: Sequence[str], client: RegistryClient, ref: ImageReference, expected: str
) -> ImageDescription | str:
    """What the registry serves when `ref` is the pushed image, else the problem (text)."""
    problem = ""
    for attempt in range(1, VERIFY_ATTEMPTS + 1):
        try:
            described = await client.inspect(ref)
        except BrokkrError as e:
            problem = str(e)
        else:
            served = {_platform_name(p.platform) for p in described.platforms}
            if described.digest != expected:
                problem = f"resolves to {described.digest}, pushed {expected}"
            elif served != set(platforms):
                problem = f"has platforms {sorted(served)}, pushed {list(platforms)}"
            else:
                return described
        if attempt < VERIFY_ATTEMPTS:  # registries may lag behind a write for a moment
            await anyio.sleep(READ_BACK_DELAY * attempt)
    return problem


def _platform_name(platform: str) -> str:
    """A registry's `os/arch[/variant]` as the request names it (`linux/arm64/v8` too)."""
    try:
        return parse_platform(platform).platform
    except BrokkrError:
        return platform
