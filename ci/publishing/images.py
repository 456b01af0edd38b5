"""Building a publish's images: every platform variant of every component, labelled,
built concurrently, each variant's SBOM read as soon as it is built.

A failed build or SBOM read is one error once all have finished; nothing has
been pushed then.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace

import dagger

from ci import dependency_cache as _cache
from ci.build import image as _image
from ci.build import selection as _selection
from ci.build.stages import (
    NOTHING_PUSHED,
    check_one,
    check_source,
    console_marker,
    native_platform,
)
from ci.concurrency import run_all
from ci.errors import BrokkrError
from ci.publishing.plan import Target, pinned_first
from ci.publishing.request import PublishRequest
from ci.rules.components import Component, component_spec
from ci.rules.labels import image_labels
from ci.rules.platforms import PlatformSpec
from ci.supply_chain import sbom as _sbom


async def with_components(request: PublishRequest, source: dagger.Directory) -> PublishRequest:
    """`request` with the components it publishes: those asked for, else what `source` holds.

    Reads only whether the source has a UI app (`_selection`); refuses a `ui`
    the source lacks, naming --ui-path. The UI folder becomes the one used.
    """
    selection = await _selection.select_for_source(
        source, components=request.components, ui_path=request.ui_path
    )
    return replace(
        request,
        components=selection.components,
        ui_path=selection.ui_path,
        no_ui=selection.no_ui,
    )


async def check_sources(
    source: dagger.Directory, components: Sequence[Component], ui_path: str
) -> None:
    """Check the source holds every component in `components` (reads only, nothing is built)."""
    await run_all(
        [lambda c=c: check_source(source, component_spec(c), ui_path) for c in components]
    )


async def compose(
    request: PublishRequest,
    source: dagger.Directory,
    cache: _cache.CachePlan | None = None,
) -> tuple[dict[Component, _image.Image], dict[Component, str | None]]:
    """Compose every component's multi-platform image, and the console marker the
    broker's start check looks for in its binary (None without a console).

    The cooks the dependency `cache` does not serve take the planner's recipe: as
    a lazy file when the cache saves them (nothing runs here), else read first
    (the cargo-chef planners run here; `compose_variants`).

    The sources were checked by `check_sources` already.
    """
    images: dict[Component, _image.Image] = {}
    markers: dict[Component, str | None] = {}

    async def one(component: Component) -> None:
        images[component] = await _image.build_multi(
            source,
            component=component,
            platforms=request.platforms,
            emulate=request.emulate,
            ui_path=request.ui_path,
            source_checked=True,
            cached=cache.images.get(component) if cache is not None else None,
            cooks=cache.cookers.setdefault(component, {}) if cache is not None else None,
            check=False,  # `build` runs the checks, beside the SBOM reads
            # Cooks the cache saves need no recipe read first: no round before the build.
            read_recipe=cache is None or not cache.saves,
        )
        spec = component_spec(component)
        markers[component] = await console_marker(source, spec) if spec.rust else None

    await run_all([lambda c=c: one(c) for c in request.components])
    return images, markers


async def build(
    request: PublishRequest,
    targets: Sequence[Target],
    images: dict[Component, _image.Image],
    *,
    markers: Mapping[Component, str | None] | None = None,
    read_sboms: bool = False,
) -> tuple[dict[str, list[dagger.Container]], list[_sbom.Pending] | None]:
    """Label and build every variant of every target, concurrently; any failure stops the run.

    One engine round: each labelled variant's start check (`check_one`, which
    builds it) and, with `read_sboms`, the reads of its SBOM inputs
    (`_sbom.read_pending`) all start at once; each read waits for the build
    it reads in the engine, not in this module. Returns the variants and the
    SBOMs read (one per platform of every target, in that order; None without
    `read_sboms`). A variant that did not build or start, or a failed read, is
    one `BrokkrError` once everything has finished: nothing has been pushed then.
    """
    variants: dict[str, list[dagger.Container]] = {}
    for target in targets:
        labels = image_labels(
            target.spec,
            revision=request.sha,
            version=pinned_first(target.tags)[0].name,
            created=request.created,
            source_url=request.source_url,
        )
        labelled = []
        for variant in images[target.spec.component].variants:
            for name, value in labels.items():
                variant = variant.with_label(name, value)
            labelled.append(variant)
        variants[target.spec.name] = labelled

    native = await native_platform() if read_sboms else ""
    failures: list[str] = []
    read_failures: list[str] = []
    read: dict[tuple[str, int], _sbom.Pending] = {}

    async def check(target: Target, index: int, platform: PlatformSpec) -> None:
        variant = variants[target.spec.name][index]
        embedded = (markers or {}).get(target.spec.component)
        problem = await check_one(target.spec, variant, platform.platform, embedded=embedded)
        if problem is not None:
            failures.append(problem)

    async def sbom(target: Target, index: int, platform: PlatformSpec) -> None:
        variant = variants[target.spec.name][index]
        try:
            read[(target.spec.name, index)] = await _sbom.read_pending(
                sbom_job(target, platform, variant), native
            )
        except BrokkrError as e:
            read_failures.append(str(e))

    jobs = [
        lambda job=job, t=target, i=index, p=platform: job(t, i, p)
        for target in targets
        for index, platform in enumerate(request.platforms)
        for job in ((check, sbom) if read_sboms else (check,))
    ]
    await run_all(jobs)
    if failures:  # a read of an image that did not build failed too: the build says why
        raise BrokkrError("; ".join(sorted(failures)) + NOTHING_PUSHED)
    if read_failures:
        msg = "reading the SBOMs failed, nothing was pushed: " + "; ".join(sorted(read_failures))
        raise BrokkrError(msg)
    if not read_sboms:
        return variants, None
    pending = [
        read[(target.spec.name, index)]
        for target in targets
        for index in range(len(request.platforms))
    ]
    return variants, pending


def sbom_job(target: Target, platform: PlatformSpec, image: dagger.Container) -> _sbom.PublishJob:
    """The SBOM of `target` for `platform`, read from its built (labelled) variant `image`."""
    return _sbom.PublishJob(
        spec=target.spec,
        repository=target.repository,
        version=pinned_first(target.tags)[0].name,
        platform=platform,
        image=image,
    )
