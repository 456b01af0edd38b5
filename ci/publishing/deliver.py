"""Delivering a built publish: per component, push -> read back -> attach SBOMs -> sign.

The components' chains run in parallel; one error once all have finished.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import anyio
import dagger

from ci.access import RegistryAccess
from ci.build import push as _push
from ci.concurrency import run_all
from ci.errors import BrokkrError
from ci.publishing.plan import Target, pinned_first
from ci.publishing.readback import verify
from ci.publishing.report import after_push_failure, written_after_push
from ci.publishing.request import PublishRequest
from ci.registry.client import RegistryClient
from ci.rules.namespace import Namespace
from ci.rules.tags import Tag
from ci.supply_chain import sbom as _sbom
from ci.supply_chain import signing as _signing


async def deliver(
    request: PublishRequest,
    targets: Sequence[Target],
    variants: dict[str, list[dagger.Container]],
    client: RegistryClient,
    access: RegistryAccess,
    *,
    pending: Sequence[_sbom.Pending] | None = None,
    signing_key: _signing.SigningKey | None = None,
    after_release: Callable[[], Awaitable[None]] | None = None,
) -> list[str]:
    """Push, read back, attach the SBOMs of and sign every target: one chain per target.

    Components go in parallel, each as one chain: its immutable tag is pushed
    first and its other tags after it (GHCR has lost tags under parallel
    pushes of a new image), while the immutable tag is read back; then the
    other tags are read back; then its `pending` SBOMs are attached (None:
    they are not); then, with `signing_key`, it is signed. One component's
    attaches and signatures overlap another's pushes. A chain that fails
    stops there and does not stop the others.

    `after_release` (publish's dependency-cache save, which never raises) runs
    once every target's immutable tag is pushed and read back, beside the
    moving tags' pushes; it does not run when one of them failed.

    Once every chain has finished: a push that failed for good (or a read-back
    that could not finish) is a `BrokkrError` listing every address that was
    pushed, a tag the registry does not serve is one naming it; either also
    says what was attached and signed meanwhile. Otherwise a failed SBOM or
    signature is one error (`after_push_failure`). Returns every tag's
    `address@digest` (targets' order); what was attached and signed is on the
    targets.
    """
    refs: dict[str, str] = {}
    push_errors: list[str] = []
    problems: list[str] = []
    sbom_failures: list[str] = []
    signing_failures: list[str] = []
    released = anyio.Event()
    immutable_left = len(targets)
    release_failed = False

    def immutable_done(ok: bool) -> None:
        nonlocal immutable_left, release_failed
        release_failed = release_failed or not ok
        immutable_left -= 1
        if immutable_left == 0:
            released.set()

    if not targets:
        released.set()

    async def when_released() -> None:
        await released.wait()
        if after_release is not None and not release_failed:
            await after_release()

    async def chain(target: Target) -> None:
        primary, *others = variants[target.spec.name]
        primary = _push.with_auth(
            primary, target.repository, username=access.username, password=access.password
        )
        first, *rest = pinned_first(target.tags)

        async def tag(t: Tag) -> None:
            address = target.address(t.name)
            refs[address] = await _push.push(
                primary, others, address, registry_service=access.service
            )
            target.pushed.append(t.name)

        immutable_verified: list[str] | None = None
        reported = False

        async def verify_immutable() -> None:
            nonlocal immutable_verified, reported
            immutable_verified = await verify(request.platform_names, target, refs, client, [first])
            reported = True
            immutable_done(not immutable_verified)

        try:
            await tag(first)
            await run_all([verify_immutable, *(lambda t=t: tag(t) for t in rest)])
            read_back = [
                *(immutable_verified or []),
                *await verify(request.platform_names, target, refs, client, rest),
            ]
        except BrokkrError as e:
            push_errors.append(str(e))
            return
        finally:
            if not reported:  # the immutable tag was not pushed and read back
                immutable_done(False)
        if read_back:
            problems.extend(read_back)
            return
        if pending is not None:
            mine = [p for p in pending if p.job.spec.name == target.spec.name]
            sbom_failures.extend(
                await attach_sboms(
                    [target], client, mine, namespace=request.registry, created=request.created
                )
            )
        if signing_key is not None:
            signing_failures.extend(
                await sign(
                    [target],
                    client,
                    signing_key,
                    namespace=request.registry,
                    created=request.created,
                )
            )

    await run_all([*(lambda t=t: chain(t) for t in targets), when_released])

    sbom_failures.sort()
    written = written_after_push(
        targets,
        sboms_attachable=pending is not None,
        sbom_failures=sbom_failures,
        signing=signing_key is not None,
        signing_failures=sorted(signing_failures),
    )
    meanwhile = ""
    if any(t.sboms or t.signatures for t in targets) or sbom_failures or signing_failures:
        meanwhile = " For the images that were pushed and verified: " + " ".join(written)
    if push_errors:
        done = [target.address(t) for target in targets for t in target.pushed]
        note = f" Already pushed: {', '.join(done)}." if done else " Nothing was pushed."
        raise BrokkrError(f"{'; '.join(sorted(push_errors))}{note}{meanwhile}")
    if problems:
        msg = "published, but the registry does not serve what was pushed: " + "; ".join(problems)
        raise BrokkrError(msg + meanwhile)
    pushed = [refs[t.address(tag.name)] for t in targets for tag in t.tags]
    if sbom_failures or signing_failures:
        raise BrokkrError(after_push_failure(pushed, written))
    return pushed


async def attach_sboms(
    targets: Sequence[Target],
    client: RegistryClient,
    pending: Sequence[_sbom.Pending],
    *,
    namespace: Namespace,
    created: str,
) -> list[str]:
    """Attach every pending SBOM to its pushed platform manifest, under one registry deadline.

    `publish` calls it for one component at a time, once its tags are read
    back. Fills each target's `sboms`; returns what was not attached and why
    (not raised).
    """
    digests = {(t.repository.name, p): d for t in targets for p, d in t.platform_digests.items()}
    # One deadline for all the attaches (the client's Limits.deadline).
    try:
        with client.operation(
            targets[0].repository.registry,
            f"attaching the SBOMs of the images in {namespace}",
        ):
            report = await _sbom.attach_for_publish(client, pending, digests, created=created)
    except BrokkrError as e:  # each attach reports its own failure; this is anything else
        report = _sbom.AttachReport([], [str(e)])
    by_name = {t.repository.name: t for t in targets}
    for attached in report.attached:
        by_name[attached.repository].sboms[attached.platform] = attached
    return report.failures


async def sign(
    targets: Sequence[Target],
    client: RegistryClient,
    key: _signing.SigningKey,
    *,
    namespace: Namespace,
    created: str,
) -> list[str]:
    """Sign every pushed platform manifest, then the index, of every target (cosign format).

    Components go in parallel, all under one registry deadline (the client's
    `Limits.deadline`); `publish` calls it for one component at a time, once
    its SBOMs are attached. Fills each target's `signatures`. Returns one entry per
    target whose signing failed, naming it and why (empty when all is
    signed); the images themselves stay as pushed.
    """
    problems: list[str] = []

    async def one(target: Target) -> None:
        async def sign_one(what: str, digest: str) -> None:
            await _signing.sign_manifest(client, target.repository, digest, key, created=created)
            target.signatures[what] = _signing.signature_tag(digest)

        try:
            await run_all(
                [lambda p=p, d=d: sign_one(p, d) for p, d in target.platform_digests.items()]
            )
            await sign_one("index", target.digest)
        except BrokkrError as e:
            problems.append(f"{target.repository.name}@{target.digest}: {e}")

    try:
        with client.operation(
            targets[0].repository.registry, f"signing the pushed images in {namespace}"
        ):
            await run_all([lambda t=t: one(t) for t in targets])
    except BrokkrError as e:
        problems.append(str(e))
    return sorted(problems)
