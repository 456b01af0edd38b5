"""The dependency cache in a publish: save the cooks that ran.

`ci.dependency_cache.prepare` runs before anything is built: it keys every
cook the publish needs, looks each key up with the publish's registry client
and pulls each hit by digest (`CachePlan.images`); every other cook runs as
without a cache. `save`, once every release image is pushed under its
immutable tag and read back (beside the moving tags' pushes, `deliver`'s
`after_release`), pushes a cache image for every cook that ran, when the
publish may write there (the `can_write` rule of SBOMs and signatures: with
--username/--password, or on a loopback registry). Nothing here fails a
publish: a push that fails is a note (`# dependency cache …`).
"""

from __future__ import annotations

import dagger

from ci.build import dependencies as _deps
from ci.concurrency import run_all
from ci.dependency_cache import CachePlan, Cook
from ci.errors import BrokkrError


async def save(
    cache: CachePlan,
    *,
    created: str,
    username: str,
    password: dagger.Secret | None,
    registry_service: dagger.Service | None = None,
) -> None:
    """Push a cache image for every cook that ran; a failure is a note, never an error.

    `created` (the publish's `--created`) becomes each image's created label.
    """
    if cache.repository is None or not cache.cooks or cache.recipe is None:
        return
    if not cache.writable:
        cache.note(
            f"read-only: {len(cache.cooks)} new cook(s) not saved to {cache.repository.name} "
            "(saving needs --username/--password, except on a loopback registry)"
        )
        return
    repository, recipe = cache.repository, cache.recipe
    notes: list[str] = []

    async def one(cook: Cook) -> None:
        cooked = cache.cookers.get(cook.component, {}).get(cook.plan.target.platform)
        if cooked is None:
            return
        address = f"{repository.name}:{cook.tag}"
        try:
            ref = await _deps.push_cache_image(
                cook.plan,
                cooked,
                cook.key,
                recipe.members,
                address,
                created=created,
                username=username,
                password=password,
                registry_service=registry_service,
            )
        except BrokkrError as e:
            notes.append(f"saving {address} failed (the publish is not affected): {e}")
            return
        notes.append(f"saved {ref} ({recipe.crates} dependency crates)")

    await run_all([lambda c=c: one(c) for c in cache.cooks])
    for note in sorted(notes):
        cache.note(note)
