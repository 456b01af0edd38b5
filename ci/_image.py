"""A multi-platform image: one component built for several platforms.

Dagger cannot usefully hand a bare list of platform variants to the command
line, so `image` returns an `Image` object: `tarball` exports a multi-platform
OCI archive (`dagger call image --component broker tarball export --path
broker.tar`) and `publish` pushes one multi-platform manifest.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import dagger
from dagger import Doc, function, object_type

from ci._build import (
    DEFAULT_UI_PATH,
    check_rust_source,
    compose_rust,
    native_platform,
    recipes,
)
from ci._components import Component, Stage, component_spec
from ci._errors import BrokkrError
from ci._platforms import SUPPORTED_PLATFORMS, parse_platforms, plan_build
from ci._ui import ui_folder, ui_image


@object_type
class Image:
    """One Brokkr component built for several platforms."""

    component: Component = dagger.field()
    """The component the variants are images of."""
    variants: list[dagger.Container] = dagger.field()
    """The runtime image of each platform, in the order of `platforms`."""
    platforms: list[str] = dagger.field()
    """The platform of each variant."""

    @function
    def tarball(self) -> dagger.File:
        """A multi-platform OCI image archive of all variants (`… tarball export --path x.tar`)."""
        return self.variants[0].as_tarball(
            platform_variants=self.variants[1:],
            media_types=dagger.ImageMediaTypes.OCIMediaTypes,
        )

    @function
    async def publish(
        self,
        address: Annotated[
            str, Doc("Where to push, e.g. ghcr.io/colliery-io/brokkr-broker:1.2.3.")
        ],
        username: Annotated[str, Doc("Registry user; required with a password.")] = "",
        password: Annotated[
            dagger.Secret | None,
            Doc(
                "Registry password or token (e.g. env:GITHUB_TOKEN). Without it the "
                "Docker login forwarded by the Dagger CLI is used."
            ),
        ] = None,
    ) -> str:
        """Push all variants as one multi-platform manifest; return the `…@sha256:` reference."""
        if not address.strip():
            msg = "no address to publish to; give one like ghcr.io/colliery-io/brokkr-broker:1.2.3"
            raise BrokkrError(msg)
        primary = self.variants[0]
        if password is not None:
            if not username:
                msg = f"a password was given for {address} without a username; pass --username"
                raise BrokkrError(msg)
            primary = primary.with_registry_auth(address, username, password)
        return await primary.publish(
            address,
            platform_variants=self.variants[1:],
            media_types=dagger.ImageMediaTypes.OCIMediaTypes,
        )


async def build_multi(
    source: dagger.Directory,
    *,
    component: Component,
    platforms: Sequence[str] = SUPPORTED_PLATFORMS,
    emulate: bool = False,
    ui_path: str = DEFAULT_UI_PATH,
    source_checked: bool = False,
) -> Image:
    """Compose the runtime image of `component` for every platform in `platforms`.

    Platforms and the source are checked first (once; `source_checked` says the
    caller already ran `check_rust_source`). The only evaluation is
    the cargo-chef planner, once per distinct build platform, run concurrently;
    the variants themselves are built by the engine when the image is exported
    or published, all platforms in parallel.
    """
    targets = parse_platforms(list(platforms))
    spec = component_spec(component)
    if not spec.rust:
        folder, has_lock = await ui_folder(source, ui_path)
        variants = [ui_image(folder, target=t, has_lock=has_lock) for t in targets]
    else:
        if not source_checked:
            await check_rust_source(source, spec)
        native = await native_platform()
        plans = [plan_build(native=native, target=t.platform, emulate=emulate) for t in targets]
        recipe_texts = await recipes(plans, source)
        variants = [
            compose_rust(source, spec, plan, Stage.RUNTIME, recipe_texts[plan.build_platform])
            for plan in plans
        ]
    return Image(component=component, variants=variants, platforms=[t.platform for t in targets])
