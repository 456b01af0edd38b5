"""The three Brokkr components, the build stages, and what each component is.

`Component` and `Stage` are Dagger enums (what `--component` and `--stage`
accept on the command line); `COMPONENTS` is the pure table the stage builders
read: binary and crate names, exposed port, whether the runtime image carries
kubectl and runs as the non-root user 10001:10001 (`brokkr`), and the image
title and description. `select_components` decides which components a run
builds from what was asked and what the source holds (broker and agent always,
the UI when the source has a UI app).
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import dagger

from ci.errors import BrokkrError


@dagger.enum_type
class Component(enum.Enum):
    """A Brokkr image."""

    BROKER = "broker"
    """brokkr-broker: the central service (Rust), listens on 3000."""

    AGENT = "agent"
    """brokkr-agent: the Kubernetes agent (Rust, ships kubectl), listens on 8080."""

    UI = "ui"
    """brokkr-ui: the admin web UI (Node), listens on 3001."""


@dagger.enum_type
class Stage(enum.Enum):
    """A stage of an image build. The UI image has only the runtime stage."""

    PLANNER = "planner"
    """cargo-chef planner: `cargo chef prepare` over the source, produces recipe.json."""

    CACHER = "cacher"
    """cargo-chef cacher: `cargo chef cook --release`, dependencies only, sees only the recipe."""

    BUILDER = "builder"
    """`cargo build --release --bin brokkr-<component>` over the full source."""

    RUNTIME = "runtime"
    """The final image: runtime libraries, the binary, port and entrypoint."""

    CONSOLE = "console"
    """The broker's operator console (v0.9.1 on): `trunk build --release` over
    crates/brokkr-web; its dist/ is embedded with `--features embed-ui`."""


BROKKR_USER = "brokkr"
"""The name of the non-root user (and group) the broker and agent run as."""

BROKKR_UID = 10001
"""uid and gid of `BROKKR_USER`, as Brokkr's Helm charts run both (`runAsUser: 10001`)."""

BROKKR_OWNER = f"{BROKKR_UID}:{BROKKR_UID}"
"""The runtime images' numeric `USER` and the owner of their binaries."""


@dataclass(frozen=True)
class ComponentSpec:
    """What the pipeline needs to know to build one component."""

    component: Component
    name: str
    """Image and binary name, e.g. `brokkr-broker`."""
    port: int
    """The port the image exposes."""
    title: str
    """Human title (the `org.opencontainers.image.title` label)."""
    description: str
    """One-line description (the `org.opencontainers.image.description` label)."""
    rust: bool
    """Built from the Cargo workspace (planner/cacher/builder/runtime)."""
    kubectl: bool = False
    """The runtime image carries kubectl for its own architecture."""
    non_root: bool = False
    """The runtime image runs as 10001:10001 (`brokkr`), which owns the binaries."""

    @property
    def binary(self) -> str:
        """The cargo binary name (`--bin`), also the file in `/usr/local/bin`."""
        return self.name

    @property
    def crate_dir(self) -> str:
        """The crate's directory in the workspace, e.g. `crates/brokkr-broker`."""
        return f"crates/{self.name}"

    @property
    def manifest(self) -> str:
        """The crate's manifest path in the workspace."""
        return f"{self.crate_dir}/Cargo.toml"


COMPONENTS: Mapping[Component, ComponentSpec] = MappingProxyType(
    {
        Component.BROKER: ComponentSpec(
            component=Component.BROKER,
            name="brokkr-broker",
            port=3000,
            title="Brokkr Broker",
            description="Brokkr's central service: stores deployment objects and serves agents.",
            rust=True,
            non_root=True,
        ),
        Component.AGENT: ComponentSpec(
            component=Component.AGENT,
            name="brokkr-agent",
            port=8080,
            title="Brokkr Agent",
            description="Brokkr's Kubernetes agent: applies deployment objects to its cluster.",
            rust=True,
            kubectl=True,
            non_root=True,
        ),
        Component.UI: ComponentSpec(
            component=Component.UI,
            name="brokkr-ui",
            port=3001,
            title="Brokkr UI",
            description="Brokkr's administration web UI.",
            rust=False,
        ),
    }
)
"""The spec of every component."""


def component_spec(component: Component) -> ComponentSpec:
    """The spec of `component`."""
    return COMPONENTS[component]


RUST_COMPONENTS: tuple[Component, ...] = (Component.BROKER, Component.AGENT)
"""What every Brokkr source holds: the broker and agent crates."""


@dataclass(frozen=True)
class ComponentSelection:
    """The components a run builds, and why the UI is not among them when it is not.

    `components` is in the canonical order (broker, agent, ui), each once.
    `no_ui` is set when the UI was left out by default (the source has no UI
    app): the sentence `publish` and `image` print, text and JSON alike.
    """

    components: tuple[Component, ...]
    ui_path: str
    """The UI app's folder the run uses (the default or --ui-path)."""
    no_ui: str | None = None


def requested_components(
    components: Sequence[Component], component: Component | None
) -> tuple[Component, ...]:
    """Merge `--components` with `--component` (its one-item alias); empty means the default.

    Raises:
        BrokkrError: both flags are given and say different things.
    """
    listed = _canonical(components)
    if component is None:
        return listed
    if listed and listed != (component,):
        msg = (
            f"--component {component.value} and --components "
            f"{','.join(c.value for c in listed)} disagree: give one of them "
            "(--component X is --components X)"
        )
        raise BrokkrError(msg)
    return (component,)


def select_components(
    requested: Sequence[Component],
    *,
    ui_present: bool,
    ui_path: str,
    ui_path_given: bool,
) -> ComponentSelection:
    """Decide the components from what was asked and what the source holds (SPEC "Images").

    Args:
        requested: The components asked for (`requested_components`); empty
            for the default, which is every component the source holds: broker
            and agent always, the UI when the source has a UI app.
        ui_present: Whether the source holds a UI app at `ui_path` (the folder
            with its `package.json`), as the caller read it.
        ui_path: The UI app's folder looked at (normalised).
        ui_path_given: `ui_path` came from `--ui-path` rather than the default
            (`examples/ui`, the seed era's UI).

    Raises:
        BrokkrError: the UI is asked for, or `--ui-path` names a folder, and the
            source holds no UI app there. Raised before any work; the message
            names `--ui-path`.
    """
    wanted = _canonical(requested)
    asked_for_ui = Component.UI in wanted
    if not ui_present and (asked_for_ui or ui_path_given):
        why = "ui is in --components" if asked_for_ui else f"--ui-path {ui_path} was given"
        msg = (
            f"{why}, but the source holds no UI app at {ui_path!r} (no "
            f"{ui_path}/package.json). Pass --ui-path with the folder of the UI app "
            "(e.g. --ui-path examples/ui-slim on Brokkr since v0.9), or leave ui out: "
            "the default publishes what the source holds"
        )
        raise BrokkrError(msg)
    if wanted:
        return ComponentSelection(wanted, ui_path)
    if ui_present:
        return ComponentSelection(tuple(Component), ui_path)
    no_ui = (
        f"no brokkr-ui image: the source holds no UI app at {ui_path} (no "
        f"{ui_path}/package.json; Brokkr removed examples/ui, and its CI publishes broker "
        "and agent only). Name a UI app with --ui-path to build one"
    )
    return ComponentSelection(RUST_COMPONENTS, ui_path, no_ui)


def _canonical(components: Sequence[Component]) -> tuple[Component, ...]:
    """`components` each once, in the order broker, agent, ui."""
    chosen = set(components)
    return tuple(c for c in Component if c in chosen)


def check_image_name(component: Component, repository: str) -> None:
    """Refuse pushing `component` to a repository named after another Brokkr image.

    `image` returns one image per component and a chained `publish --address`
    runs on each: `.../brokkr-broker:dev` given to the agent's image would put
    the agent where the broker belongs. Any other name is the user's choice.

    Raises:
        BrokkrError: the repository's last segment is another component's image name.
    """
    name = repository.rstrip("/").rsplit("/", 1)[-1]
    own = component_spec(component).name
    others = [spec.name for spec in COMPONENTS.values() if spec.name != own]
    if name in others:
        msg = (
            f"refusing to push the {own} image to {repository}, the repository of "
            f"{name}: give the {component.value} image its own address (with several "
            "components, chain publish once per component: image --component X publish …)"
        )
        raise BrokkrError(msg)
