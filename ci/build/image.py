"""A multi-platform image: one component built for several platforms.

Dagger cannot usefully hand a bare list of platform variants to the command
line, so `image` returns one `Image` object per component: `tarball` exports a
multi-platform OCI archive (`dagger call image --component broker tarball
export --path broker.tar`) and `publish` pushes one multi-platform manifest. A
function chained after `image` runs on each component's `Image`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated

import dagger
from dagger import Doc, function, object_type

from ci.build import push as _push
from ci.build import service as _service
from ci.build.stages import DEFAULT_UI_PATH, check_starts, compose_variants, console_marker
from ci.concurrency import run_all
from ci.rules.components import Component, Stage, check_image_name, component_spec
from ci.rules.platforms import PLATFORMS, PlatformSpec


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

    @function(cache="never")
    async def publish(
        self,
        address: Annotated[
            str, Doc("Where to push, e.g. ghcr.io/colliery-io/brokkr-broker:1.2.3.")
        ],
        username: Annotated[str, Doc("Registry user; required with a password.")] = "",
        password: Annotated[
            dagger.Secret | None,
            Doc(
                "Registry password or token, as a secret (e.g. env://GITHUB_TOKEN). Without "
                "it the Docker login forwarded by the Dagger CLI is used."
            ),
        ] = None,
        registry_service: Annotated[
            dagger.Service | None,
            Doc(
                "Reach the (loopback) registry of the address through this service, e.g. "
                "tcp://localhost:5000 for a registry on the Dagger CLI's machine."
            ),
        ] = None,
    ) -> str:
        """Push all variants as one multi-platform manifest; return the `…@sha256:` reference.

        An address whose repository is named after another Brokkr image (the
        agent's image to …/brokkr-broker) is refused before the push.

        Transient registry errors are retried a bounded number of times; a
        refused login is not. `dagger call image --component ui publish
        --address ghcr.io/me/brokkr-ui:dev`; to a registry on the CLI's machine:
        `--address localhost:5000/brokkr-ui:dev --registry-service tcp://localhost:5000`.
        """
        address, ref = _push.check_address(address)
        check_image_name(self.component, ref.name)
        _service.check(ref, registry_service)
        primary = _push.with_auth(self.variants[0], ref, username=username, password=password)
        return await _push.push(
            primary, self.variants[1:], address, registry_service=registry_service
        )


async def build_multi(
    source: dagger.Directory,
    *,
    component: Component,
    platforms: Sequence[PlatformSpec] = tuple(PLATFORMS.values()),
    emulate: bool = False,
    ui_path: str = DEFAULT_UI_PATH,
    source_checked: bool = False,
    cached: Mapping[str, dagger.Container] | None = None,
    cooks: dict[str, dagger.Container] | None = None,
    check: bool = True,
    read_recipe: bool = True,
) -> Image:
    """Build the runtime image of `component` for every platform in `platforms`, start-checked.

    `platforms` come parsed (`parse_platforms`, in `ci.main`). The source is
    checked first (once; `source_checked` says the caller already ran
    `_build.check_source`). The cargo-chef planner runs once
    per distinct build platform; then every variant is built and runs its start
    check on its own platform (`_build.check_starts`), all concurrently. Any
    failure is a `BrokkrError` naming the image and platform: nothing is
    returned, so nothing can be exported or pushed. `cached` and `cooks`: the
    dependency cache's images and the cooks it may save, `read_recipe` whether the
    planner's recipe is read before building (`compose_variants`).
    With `check=False` the variants are composed, not built: the caller runs
    the start checks itself (`publish` runs them beside the SBOM reads).
    """
    targets = list(platforms)
    variants = await compose_variants(
        source,
        component_spec(component),
        targets,
        stage=Stage.RUNTIME,
        emulate=emulate,
        ui_path=ui_path,
        source_checked=source_checked,
        cached=cached,
        cooks=cooks,
        read_recipe=read_recipe,
    )
    names = [t.platform for t in targets]
    if check:
        spec = component_spec(component)
        embedded = await console_marker(source, spec) if spec.rust else None
        await check_starts(spec, variants, names, embedded=embedded)
    return Image(component=component, variants=variants, platforms=names)


async def build_each(
    source: dagger.Directory,
    *,
    components: Sequence[Component],
    platforms: Sequence[PlatformSpec] = tuple(PLATFORMS.values()),
    emulate: bool = False,
    ui_path: str = DEFAULT_UI_PATH,
    source_checked: bool = False,
    cached: Mapping[Component, Mapping[str, dagger.Container]] | None = None,
) -> list[Image]:
    """`build_multi` for every component in `components`, concurrently, in that order.

    Every build runs to its end; any failure is then one `BrokkrError` naming
    the image and platform of each (`run_all`), and nothing is returned.
    `cached`: each component's dependency-cache images (target platform -> image).
    """
    cached = cached or {}
    return await run_all(
        [
            lambda c=c: build_multi(
                source,
                component=c,
                platforms=platforms,
                emulate=emulate,
                ui_path=ui_path,
                source_checked=source_checked,
                cached=cached.get(c),
            )
            for c in components
        ]
    )
