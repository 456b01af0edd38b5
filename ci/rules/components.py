"""The three Brokkr components, the build stages, and what each component is.

`Component` and `Stage` are Dagger enums (what `--component` and `--stage`
accept on the command line); `COMPONENTS` is the pure table the stage builders
read: binary and crate names, exposed port, whether the runtime image carries
kubectl and runs as the non-root user 10001:10001 (`brokkr`), and the image
title and description.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

import dagger


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
