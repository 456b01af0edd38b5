"""The cargo-chef stages shared by the broker and agent images.

One set of stage builders serves both Rust components; each returns a
`dagger.Container` and nothing here evaluates anything except `recipe()`,
which reads the planner's output:

    chef_base(platform)          rust image + cargo-chef, cargo-auditable (once) + cargo caches
      ├─ planner(plan, source)   `cargo chef prepare` over the source → recipe.json
      └─ toolchain(plan)         build libraries; cross gcc + target `-dev` libs when crossing
           └─ cacher(plan, recipe)
                                 recipe.json (by content, or the planner's file),
                                 `cargo chef cook … --target T`
                └─ builder(plan, spec, source, recipe)
                                 full source, clean the crate, `cargo auditable build … --target T`
    runtime(plan, spec, binary)  debian:bookworm-slim for the target platform, run as 10001:10001

Brokkr v0.9.1 and later: the broker's cook and build get `cargo_features`
(`embed-ui`, the one place the features are chosen) and the builder the
operator console's dist/ (built by `ci/build/console.py`) at
crates/brokkr-web/dist.

The dependency cache (docs/dependency-cache.md) replaces the cacher on a hit:
`cached_cacher(plan, image)` is the toolchain with the cooked `target/` and
cargo's registry copied out of a cache image (pulled by digest), no cook run;
`cache_image(plan, cooked, key, members, created=…)` is what a cook leaves for
the next engine, without the workspace's own crates, dated by the publish's
commit time.

Inputs: the planner and the builder see only what cargo reads, the workspace
`SOURCE_INCLUDE` (`Cargo.toml`, `Cargo.lock`, `crates/`, and `.cargo/` and
`rust-toolchain[.toml]` when present) minus build output (`SOURCE_EXCLUDE`),
so an edit to Brokkr's docs, charts or UI never re-runs `cargo chef prepare`
or `cargo build`.

Caching: `build` and `stage` give the cacher the recipe's text
(`with_new_file`), not the planner's `File`: Dagger keys a copied file by the
call chain that produced it (which includes the source; dagger/dagger#10992),
so only the content keeps a source-only edit from re-running the dependency
build in the engine. Reading it costs an engine round before the build. A
publish that saves to the dependency cache gives the cook the planner's `File`
instead (`recipe_file`): there the cache key, taken from the source itself,
keeps a source-only edit from cooking again, and no round is spent. Cargo's
registry and git caches are cache volumes; `target/` never is. `cargo chef
cook` compiles dependencies and deletes the artifacts of its dummy workspace
libraries, and the builder cleans the component's own crate, so the workspace
crates are always compiled (with whatever they embed through `include_str!`,
such as the broker's SQL migrations) from the real source.

Cross-compiling: for a foreign target the planner, cacher and builder run on
the engine's native platform with the target triple installed, the cross gcc as
linker and the target architecture's `libpq-dev`/`libssl-dev` (Debian
multiarch); only the binary goes into the target-platform runtime image. With
an emulated plan every stage runs on the target platform instead. Cargo always
gets `--target <triple>` (natively and emulated too, where no cross toolchain is
installed), as in the Dockerfiles, so every plan leaves the binary in
`target/<triple>/release`.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Sequence

import dagger
from dagger import dag

from ci.rules import cache_key as _key
from ci.rules.components import BROKKR_OWNER, BROKKR_UID, BROKKR_USER, ComponentSpec
from ci.rules.platforms import (
    NATIVE_BUILD_PACKAGES,
    BuildMode,
    BuildPlan,
    cross_env,
    cross_packages,
)
from ci.rules.versions import CARGO_AUDITABLE_VERSION as AUDITABLE
from ci.rules.versions import (
    CARGO_CHEF_VERSION,
    RUNTIME_IMAGE,
    RUNTIME_PACKAGES,
    RUST_IMAGE,
    kubectl_checksum,
    kubectl_url,
)

WORKDIR = "/app"
"""The workspace root inside the builder containers."""

RECIPE = "recipe.json"
"""cargo-chef's recipe file, relative to `WORKDIR`."""

SOURCE_INCLUDE: tuple[str, ...] = (
    "Cargo.toml",
    "Cargo.lock",
    "crates/",
    ".cargo/",
    "rust-toolchain",
    "rust-toolchain.toml",
)
"""All the Rust stages see of the source: what cargo and rustup read (absent ones are skipped)."""

SOURCE_EXCLUDE: tuple[str, ...] = ("target/", "**/target/", "**/node_modules/", ".git/")
"""Never copied into the builders, even inside `SOURCE_INCLUDE`: build output, node_modules, git."""

RUNTIME_WORKDIR = "/usr/local/bin"
"""The runtime images' working directory, where the binaries are: Brokkr's compose file runs
`./brokkr-broker` and `./brokkr-agent` with `entrypoint: []`."""

CARGO_REGISTRY = "/usr/local/cargo/registry"
CARGO_GIT = "/usr/local/cargo/git"
REGISTRY_CACHE = "brokkr-cargo-registry"
GIT_CACHE = "brokkr-cargo-git"


TOUCH_SOURCES = ["sh", "-c", "find . -path ./target -prune -o -type f -exec touch {} +"]
"""Make every source file newer than the dependency layer (see `builder`)."""


def apt_install(packages: Iterable[str]) -> list[str]:
    """A `sh -c` exec that installs Debian `packages` without recommends and cleans the lists."""
    names = " ".join(shlex.quote(p) for p in packages)
    script = (
        "apt-get update && apt-get install -y --no-install-recommends "
        f"{names} && rm -rf /var/lib/apt/lists/*"
    )
    return ["sh", "-c", script]


def rust_source(source: dagger.Directory) -> dagger.Directory:
    """The source the Rust stages see: `SOURCE_INCLUDE` of `source`, minus `SOURCE_EXCLUDE`."""
    return source.filter(include=list(SOURCE_INCLUDE), exclude=list(SOURCE_EXCLUDE))


def chef_base(platform: str) -> dagger.Container:
    """The rust image on `platform` with cargo-chef and cargo-auditable installed (pinned,
    once) and cargo's caches mounted."""
    return (
        dag.container(platform=dagger.Platform(platform))
        .from_(RUST_IMAGE)
        .with_mounted_cache(CARGO_REGISTRY, dag.cache_volume(REGISTRY_CACHE))
        .with_mounted_cache(CARGO_GIT, dag.cache_volume(GIT_CACHE))
        .with_exec(["cargo", "install", "cargo-chef", "--locked", "--version", CARGO_CHEF_VERSION])
        .with_exec(["cargo", "install", "cargo-auditable", "--locked", "--version", AUDITABLE])
        .with_workdir(WORKDIR)
    )


def planner(plan: BuildPlan, source: dagger.Directory) -> dagger.Container:
    """`cargo chef prepare` over the source; the recipe is at `/app/recipe.json`."""
    return (
        chef_base(plan.build_platform)
        .with_directory(WORKDIR, rust_source(source))
        .with_exec(["cargo", "chef", "prepare", "--recipe-path", RECIPE])
    )


async def recipe(planner_ctr: dagger.Container) -> str:
    """Run the planner and return the recipe's text (what the cacher is keyed on)."""
    return await planner_ctr.file(f"{WORKDIR}/{RECIPE}").contents()


def toolchain(plan: BuildPlan) -> dagger.Container:
    """The chef base plus what compiling Brokkr needs for the plan's target.

    Native and emulated plans install the build libraries of the container's
    own architecture. A cross plan adds the target architecture to dpkg,
    installs the cross gcc and the target's `-dev` packages, adds the Rust
    target and sets the linker and pkg-config environment.
    """
    base = chef_base(plan.build_platform)
    if plan.mode is not BuildMode.CROSS:
        return base.with_exec(apt_install(NATIVE_BUILD_PACKAGES))
    target = plan.target
    ctr = (
        base.with_exec(["dpkg", "--add-architecture", target.debian_arch])
        .with_exec(apt_install(cross_packages(target)))
        .with_exec(["rustup", "target", "add", target.rust_target])
    )
    for name, value in cross_env(target).items():
        ctr = ctr.with_env_variable(name, value)
    return ctr


EMBED_UI = "embed-ui"
"""The broker feature that bakes the operator console's dist/ into the binary (v0.9.1 on)."""


def cargo_features(spec: ComponentSpec, *, console: bool) -> tuple[str, ...]:
    """The cargo features of `spec`'s dependency cook and build: the one place they are chosen.

    `("embed-ui",)` for the broker of a source with a console (`ci/build/console.py`
    detects it), none otherwise (the seed era, the agent). A dependency cache keyed on
    the cook must key on this value.
    """
    return (EMBED_UI,) if console and spec.rust and spec.name == "brokkr-broker" else ()


def feature_args(features: Sequence[str]) -> list[str]:
    """`--features a,b` for cargo, nothing without features."""
    return ["--features", ",".join(features)] if features else []


def recipe_file(planner_ctr: dagger.Container) -> dagger.File:
    """The planner's recipe as a lazy `File`: nothing runs until a cook needs it."""
    return planner_ctr.file(f"{WORKDIR}/{RECIPE}")


def cacher(
    plan: BuildPlan, recipe: str | dagger.File, features: Sequence[str] = ()
) -> dagger.Container:
    """Only the recipe, then `cargo chef cook --release [--features F] --target T`: the
    dependency layer (with `embed-ui`, rust-embed and mime_guess are in it).

    `recipe` is its text (`recipe()`: the engine keys the cook on the content) or
    the planner's `File` (`recipe_file()`: keyed on the planner's inputs, the
    whole Rust source, but read by no one before the cook runs).
    """
    path = f"{WORKDIR}/{RECIPE}"
    base = toolchain(plan)
    base = (
        base.with_new_file(path, recipe)
        if isinstance(recipe, str)
        else base.with_file(path, recipe)
    )
    return base.with_exec(
        [
            "cargo",
            "chef",
            "cook",
            "--release",
            "--recipe-path",
            RECIPE,
            *feature_args(features),
            *plan.target_args,
        ]
    )


CACHE_ROOT = "/brokkr-deps"
"""Where a dependency-cache image holds `target/` and `registry/` (cargo's, which the
cook reads from a cache volume that is not part of any image)."""

SAVE_REGISTRY = ["sh", "-c", f"mkdir -p {CACHE_ROOT} && cp -a {CARGO_REGISTRY} {CACHE_ROOT}/"]
"""Copy cargo's registry (a mounted cache volume) into the cooked container's own files."""

RESTORE_REGISTRY = [
    "sh",
    "-c",
    f"cp -a {CACHE_ROOT}/registry/. {CARGO_REGISTRY}/ && rm -rf {CACHE_ROOT}",
]
"""On a cache hit: the cached crate sources and index into cargo's registry volume."""


def cook_inputs(plan: BuildPlan, features: Sequence[str] = ()) -> _key.CookInputs:
    """Everything the cook of `plan` depends on besides the recipe (the cache key's inputs)."""
    cross = plan.mode is BuildMode.CROSS
    packages = cross_packages(plan.target) if cross else NATIVE_BUILD_PACKAGES
    env = cross_env(plan.target) if cross else {}
    return _key.CookInputs(
        rust_image=RUST_IMAGE,
        cargo_chef=CARGO_CHEF_VERSION,
        build_platform=plan.build_platform,
        target_platform=plan.target.platform,
        target_triple=plan.target.rust_target,
        mode=plan.mode.value,
        packages=tuple(packages),
        env=tuple(sorted(env.items())),
        profile="release",
        features=tuple(features),
    )


def cached_cacher(plan: BuildPlan, image: dagger.Container) -> dagger.Container:
    """The cacher on a dependency-cache hit: no `cargo chef cook` runs.

    The toolchain of `plan`, with the cooked `target/` of the cache `image`
    (pulled by digest) at `/app/target` and its crate sources restored into
    cargo's registry volume. The builder on top of it is the same as after a
    cook (every source touched, the component's crate cleaned), so no
    workspace crate can come from the cache; the cache image holds none anyway.
    """
    return (
        toolchain(plan)
        .with_directory(f"{WORKDIR}/target", image.directory(f"{CACHE_ROOT}/target"))
        .with_directory(f"{CACHE_ROOT}/registry", image.directory(f"{CACHE_ROOT}/registry"))
        .with_exec(RESTORE_REGISTRY)
    )


def member_artifacts(members: Iterable[str]) -> list[str]:
    """Patterns of the workspace crates' own artifacts under `target/`: a cache image
    leaves them out (cook's dummy builds of the members must never travel)."""
    patterns = []
    for name in sorted(set(members)):
        crate = name.replace("-", "_")
        patterns += [
            f"**/.fingerprint/{name}-*",
            f"**/build/{name}-*",
            f"**/deps/{crate}-*",
            f"**/deps/lib{crate}-*",
            f"**/{name}",
            f"**/{name}.d",
            f"**/lib{crate}.*",
        ]
    return patterns


def cache_image(
    plan: BuildPlan,
    cooked: dagger.Container,
    key: str,
    members: Iterable[str],
    *,
    created: str,
) -> dagger.Container:
    """The dependency-cache image of `cooked` (a cacher that ran the cook) for `key`.

    An image for the build platform holding `/brokkr-deps/target` (the cooked
    `target/` without the workspace crates' artifacts, `member_artifacts`) and
    `/brokkr-deps/registry` (the crate sources cargo downloaded), labelled with
    the key, content and build platform that `lookup` checks, and with `created`
    (the publish's commit time) as `org.opencontainers.image.created`, which
    `prune --dependency-cache` orders keys by.
    """
    saved = cooked.with_exec(SAVE_REGISTRY)
    ctr = (
        dag.container(platform=dagger.Platform(plan.build_platform))
        .with_directory(
            f"{CACHE_ROOT}/target",
            cooked.directory(f"{WORKDIR}/target"),
            exclude=member_artifacts(members),
        )
        .with_directory(f"{CACHE_ROOT}/registry", saved.directory(f"{CACHE_ROOT}/registry"))
    )
    for name, value in _key.cache_labels(key, plan.build_platform, created).items():
        ctr = ctr.with_label(name, value)
    return ctr


def builder(
    plan: BuildPlan,
    spec: ComponentSpec,
    source: dagger.Directory,
    recipe: str | dagger.File = "",
    *,
    features: Sequence[str] = (),
    console_dist: tuple[str, dagger.Directory] | None = None,
    dependencies: dagger.Container | None = None,
) -> dagger.Container:
    """The cacher plus the full source, then `cargo auditable build --release --bin <binary>
    --target T`: cargo-auditable embeds the binary's crate list in its `.dep-v0` section.

    Nothing of cook's dummy workspace crates may survive into the release
    binary (Brokkr once shipped stale SQL migrations that way): every source
    file is touched so cargo sees each workspace crate, and every file it
    embeds, as newer than anything cook compiled, and `cargo clean --package`
    removes the component's own dummy binary, which cook leaves behind.

    `features` go to both the cook and the build; `console_dist` is the
    (workspace-relative path, directory) of the console bundle the broker embeds.
    `dependencies` is the cacher to start from (`cached_cacher` on a cache hit);
    by default `cacher(plan, recipe, features)`.
    """
    deps = dependencies if dependencies is not None else cacher(plan, recipe, features)
    ctr = deps.with_directory(WORKDIR, rust_source(source))
    if console_dist is not None:
        path, bundle = console_dist
        ctr = ctr.with_directory(f"{WORKDIR}/{path}", bundle)
    return (
        ctr.with_exec(TOUCH_SOURCES)
        .with_exec(["cargo", "clean", "--release", "--package", spec.name, *plan.target_args])
        .with_exec(
            [
                "cargo",
                "auditable",
                "build",
                "--release",
                "--bin",
                spec.binary,
                *feature_args(features),
                *plan.target_args,
            ]
        )
    )


def binary_path(plan: BuildPlan, spec: ComponentSpec) -> str:
    """Where the builder leaves the binary: `/app/target/<triple>/release/<binary>`."""
    return f"{WORKDIR}/{plan.release_dir}/{spec.binary}"


def runtime(plan: BuildPlan, spec: ComponentSpec, binary: dagger.File) -> dagger.Container:
    """`debian:bookworm-slim` for the target platform with the runtime libraries and `binary`.

    The agent also gets kubectl for the image's own architecture (downloaded by
    the engine and checked against the pinned sha256). The image runs as the
    numeric user `10001:10001` (Kubernetes' `runAsNonRoot` can only verify a
    numeric user); the `brokkr` user and group with that id exist and own the
    binaries. The working directory is `/usr/local/bin`, where the binaries are.
    """
    ctr = (
        dag.container(platform=dagger.Platform(plan.target.platform))
        .from_(RUNTIME_IMAGE)
        .with_exec(apt_install(RUNTIME_PACKAGES))
    )
    owner = ""
    if spec.non_root:
        uid = str(BROKKR_UID)
        ctr = ctr.with_exec(["groupadd", "--system", "--gid", uid, BROKKR_USER]).with_exec(
            [
                "useradd",
                "--system",
                "--uid",
                uid,
                "--gid",
                uid,
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                BROKKR_USER,
            ]
        )
        owner = BROKKR_OWNER
    if spec.kubectl:
        arch = plan.target.kubectl_arch
        kubectl = dag.http(kubectl_url(arch), checksum=kubectl_checksum(arch))
        ctr = ctr.with_file(f"{RUNTIME_WORKDIR}/kubectl", kubectl, permissions=0o755, owner=owner)
    ctr = ctr.with_file(f"{RUNTIME_WORKDIR}/{spec.binary}", binary, permissions=0o755, owner=owner)
    ctr = (
        ctr.with_workdir(RUNTIME_WORKDIR)
        .with_exposed_port(spec.port)
        .with_entrypoint([spec.binary])
    )
    if spec.non_root:
        ctr = ctr.with_user(BROKKR_OWNER)
    return ctr


def start_check(spec: ComponentSpec, embedded: str | None = None) -> list[str]:
    """The runtime image's start check: the binary answers `--help` from the working directory
    (as Brokkr's compose file runs it), and the agent's kubectl runs.

    `embedded` is a file name the console stage wrote into dist/: the check then
    also proves the binary carries it (`grep -q -a -F <name> ./<binary>`), i.e. the
    console is inside, not only that the binary runs.
    """
    script = f"./{spec.binary} --help"
    if spec.kubectl:
        script += " && kubectl version --client"
    if embedded is not None:
        script += f" && grep -q -a -F {shlex.quote(embedded)} ./{spec.binary}"
    return ["sh", "-c", script]
