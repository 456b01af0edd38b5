"""Publishing: every computed tag, every platform, verified, never overwriting a release.

The order is the contract (SPEC "Publish"):

1. every input is checked before anything runs (`PublishRequest`), and the
   components are settled (`with_components`: those asked for, else every
   component the source holds; a `ui` the source lacks is refused);
2. the registry is read: the semver tags already there decide where moving
   tags may go, and an immutable tag that already exists stops the run before
   anything is built (unless `force`);
3. the dependency cache (`dependency_cache`, docs/dependency-cache.md) is
   looked up: each Rust cook whose key is found starts from that image, by
   digest, instead of running `cargo chef cook`;
4. every platform variant of every component is built, concurrently, in one
   engine round: each variant's start check (which builds it) and the reads
   of its SBOM inputs (`_sbom`) start at once; a failed build, check or read
   stops the run and nothing is pushed;
5. each component is pushed as one multi-platform manifest under its
   immutable tag, then under its other tags;
6. its tags are read back and must resolve to the pushed index digest with
   every requested platform (the immutable tag while the others are pushed);
7. its SBOMs are attached to its pushed platform manifests as OCI referrers
   (`_referrers`) when the module's client may write there (`can_write`:
   with credentials, or anonymously on a loopback registry); otherwise the
   output says they were not;
8. with a signing key, its platform manifests and then its index are signed
   in cosign's format (`_signing`), each signature stored under its
   `sha256-<hex>.sig` tag next to the image (the same `can_write` rule,
   checked before anything runs).

Steps 5 to 8 are one chain per component, the components' chains running in
parallel (`deliver`): one component's SBOMs and signatures are written while
another's tags are still being pushed. The plan's reads, and each
component's read-back, SBOM attaches and signing, each run under one registry
deadline (`RegistryClient.operation`). The output (`render`) reports steps 6
to 8: text lines, or one JSON array. A failure in step 7 does not stop step
8; once every chain has finished, failures in either are one error
(`after_push_failure`) naming what was pushed, attached and signed. Once
every component's immutable tag is pushed and read back, the cooks that ran
are saved to the dependency cache, beside the moving tags' pushes (a failure
is a note; nothing is saved when an immutable tag failed).

Engine rounds (benchmarks/publish_overlap.py): a release waits for three,
cold or warm dependency cache alike: step 4 (the cooks that the cache saves
take the planner's recipe as a file, so nothing is read before it), the
immutable pushes, then the moving tags beside the cache pushes. Without a
cache that saves (--no-dependency-cache, or read-only) the planner's recipe
is read first, so that the engine keys its own cook on the recipe's content:
one round more when something cooks.

The steps live in one module each: `request` (the checked inputs), `plan`
(step 2), `dependency_cache` (step 3), `images` (step 4), `deliver` (steps 5
to 8, with `readback` for step 6) and `report` (the output and the after-push
error); this module runs them in order.

Two runs for the same repository at once could both find a tag absent and
both push it; CI serialises runs per ref (`concurrency` in the workflow).
"""

from __future__ import annotations

import dagger

from ci import dependency_cache as _cache
from ci.access import RegistryAccess
from ci.errors import BrokkrError
from ci.publishing import dependency_cache as _saving
from ci.publishing.deliver import deliver
from ci.publishing.images import build, check_sources, compose, with_components
from ci.publishing.plan import plan, refuse_overwrites
from ci.publishing.report import dry_run_report, dry_run_signing, no_ui_lines, render
from ci.publishing.request import OutputFormat, PublishRequest
from ci.registry.client import Credentials
from ci.rules.namespace import Namespace
from ci.rules.reference import is_loopback_host
from ci.supply_chain import signing as _signing

READ_LOGIN_HINT = (
    "reading the registry needs credentials here: pass --username and --password (the "
    "Docker login the Dagger CLI forwards reaches only the engine's pushes)"
)
"""What an anonymous publish is told when the registry wants a login to be read."""
SIGNING_LOGIN_HINT = (
    "--signing-key stores signatures through the module's own registry client, which logs "
    "in only with --username and --password (the Docker login the Dagger CLI forwards "
    "reaches only the engine's pushes): pass both"
)


def can_write(namespace: Namespace, credentials: Credentials | None) -> bool:
    """Whether the module's own registry client may write SBOMs and signatures to the registry.

    It logs in only with --username/--password; without them it writes
    anonymously, which only a loopback registry (a throw-away one, also one
    reached through --registry-service) is taken to accept.
    """
    if credentials is not None:
        return True
    return is_loopback_host(namespace.host)


def check_signing_login(
    request: PublishRequest, credentials: Credentials | None, key: _signing.SigningKey | None
) -> None:
    """Signing writes through the module's registry client: it needs a login (but on
    loopback). A dry run writes nothing, so it needs none; it says so instead."""
    if key is not None and not request.dry_run and not can_write(request.registry, credentials):
        raise BrokkrError(SIGNING_LOGIN_HINT)


async def publish(
    request: PublishRequest,
    source: dagger.Directory,
    access: RegistryAccess,
    signing_key: _signing.SigningKey | None = None,
) -> str:
    """Run a publish: plan, refuse overwrites, build, push, verify, sign (or report, dry run).

    `access` (the login and `--registry-service`) goes to every push and to the
    module's registry client.
    """
    credentials = access.credentials
    check_signing_login(request, credentials, signing_key)
    request = await with_components(request, source)
    await check_sources(source, request.components, request.ui_path)
    async with access.client(anonymous_hint=READ_LOGIN_HINT) as client:
        targets = await plan(request, client)
        if request.dry_run:
            lines = dry_run_report(request, targets)
            if signing_key is not None:
                lines += dry_run_signing(
                    targets, login_needed=not can_write(request.registry, credentials)
                )
            return "\n".join([*lines, *no_ui_lines(request.no_ui)])
        refuse_overwrites(request, targets)
        writable = can_write(request.registry, credentials)
        cache = await _cache.prepare(
            request.dependency_cache,
            source,
            request.components,
            request.platform_names,
            client,
            emulate=request.emulate,
            writable=writable,
            username=access.username,
            password=access.password,
            registry_service=access.service,
        )
        images, markers = await compose(request, source, cache)
        # SBOMs are read from each variant once it is built, and before the first push
        # (a failure pushes nothing); each component's are attached after its read-back
        # where the module's client may write; elsewhere publish says they were not.
        variants, pending = await build(
            request, targets, images, markers=markers, read_sboms=writable
        )

        async def save_cache() -> None:
            # Once every immutable tag is pushed and read back, beside the moving tags:
            # a failure here is a note.
            await _saving.save(
                cache,
                created=request.created,
                username=access.username,
                password=access.password,
                registry_service=access.service,
            )

        refs = await deliver(
            request,
            targets,
            variants,
            client,
            access,
            pending=pending,
            signing_key=signing_key,
            after_release=save_cache,
        )
        text = render(
            request.output,
            request.platform_names,
            targets,
            refs,
            sboms_attachable=writable,
            no_ui=request.no_ui,
        )
        if request.output is OutputFormat.TEXT and cache.notes:
            text = "\n".join([text, *cache.notes])
        return text
