"""The component and stage enums, the component table and the pinned versions."""

import re

import pytest

from ci.errors import BrokkrError
from ci.rules import versions as _versions
from ci.rules.components import (
    BROKKR_UID,
    BROKKR_USER,
    COMPONENTS,
    RUST_COMPONENTS,
    Component,
    Stage,
    check_image_name,
    component_spec,
    requested_components,
    select_components,
)


def test_component_values_are_what_the_cli_takes():
    assert [c.value for c in Component] == ["broker", "agent", "ui"]


def test_stage_values_in_build_order():
    # The cargo-chef chain in build order, then the broker's console (v0.9.1 on), a side
    # stage whose dist the builder takes.
    assert [s.value for s in Stage] == ["planner", "cacher", "builder", "runtime", "console"]


def test_every_enum_member_is_documented():
    from dagger.mod._utils import extract_enum_member_doc, get_doc

    for enum_cls in (Component, Stage):
        assert get_doc(enum_cls)
        docs = extract_enum_member_doc(enum_cls)
        for member in enum_cls:
            assert docs[member.name].description, member


@pytest.mark.parametrize(
    ("component", "name", "port", "kubectl", "non_root", "rust"),
    [
        (Component.BROKER, "brokkr-broker", 3000, False, True, True),
        (Component.AGENT, "brokkr-agent", 8080, True, True, True),
        (Component.UI, "brokkr-ui", 3001, False, False, False),
    ],
)
def test_component_specs(component, name, port, kubectl, non_root, rust):
    spec = component_spec(component)
    assert spec.component is component
    assert spec.name == name
    assert spec.binary == name
    assert spec.port == port
    assert spec.kubectl is kubectl
    assert spec.non_root is non_root
    assert spec.rust is rust
    assert spec.title.startswith("Brokkr ")
    assert spec.description


def test_rust_crates_live_under_crates():
    assert COMPONENTS[Component.BROKER].crate_dir == "crates/brokkr-broker"
    assert COMPONENTS[Component.AGENT].manifest == "crates/brokkr-agent/Cargo.toml"


def test_the_non_root_user():
    assert BROKKR_USER == "brokkr"
    assert BROKKR_UID == 10001


def test_base_images_are_pinned_by_tag():
    assert _versions.RUST_IMAGE == "rust:1.90-slim-bookworm"
    assert _versions.RUNTIME_IMAGE == "debian:bookworm-slim"
    assert _versions.NODE_IMAGE == "node:18-alpine"


def test_tool_versions_are_exact():
    assert re.fullmatch(r"\d+\.\d+\.\d+", _versions.CARGO_CHEF_VERSION)
    assert re.fullmatch(r"v\d+\.\d+\.\d+", _versions.KUBECTL_VERSION)


def test_kubectl_checksums_cover_both_architectures():
    assert set(_versions.KUBECTL_SHA256) == {"amd64", "arm64"}
    for digest in _versions.KUBECTL_SHA256.values():
        assert re.fullmatch(r"[0-9a-f]{64}", digest)
    assert _versions.KUBECTL_SHA256["amd64"] != _versions.KUBECTL_SHA256["arm64"]


def test_kubectl_url_and_checksum_form():
    assert (
        _versions.kubectl_url("arm64")
        == f"https://dl.k8s.io/release/{_versions.KUBECTL_VERSION}/bin/linux/arm64/kubectl"
    )
    assert _versions.kubectl_checksum("amd64") == "sha256:" + _versions.KUBECTL_SHA256["amd64"]


# -- which components a run builds (issue 15) ---------------------------------------

B, A, U = Component.BROKER, Component.AGENT, Component.UI


def test_the_seed_era_default_is_all_three():
    chosen = select_components((), ui_present=True, ui_path="examples/ui", ui_path_given=False)
    assert chosen.components == (B, A, U)
    assert chosen.no_ui is None


def test_a_source_without_a_ui_app_defaults_to_broker_and_agent_and_says_why():
    chosen = select_components((), ui_present=False, ui_path="examples/ui", ui_path_given=False)
    assert chosen.components == RUST_COMPONENTS == (B, A)
    assert chosen.no_ui is not None
    assert "no brokkr-ui image" in chosen.no_ui
    assert "examples/ui/package.json" in chosen.no_ui
    assert "--ui-path" in chosen.no_ui


def test_a_ui_path_that_names_an_app_adds_the_ui_by_default():
    chosen = select_components((), ui_present=True, ui_path="examples/ui-slim", ui_path_given=True)
    assert chosen.components == (B, A, U)
    assert chosen.ui_path == "examples/ui-slim"


@pytest.mark.parametrize(
    ("requested", "given"),
    [
        pytest.param((U,), False, id="ui-asked"),
        pytest.param((B, U), False, id="ui-among-others"),
        pytest.param((), True, id="ui-path-names-nothing"),
        pytest.param((B,), True, id="ui-path-names-nothing-broker-asked"),
    ],
)
def test_asking_for_a_ui_the_source_lacks_is_an_error_naming_ui_path(requested, given):
    with pytest.raises(BrokkrError, match="--ui-path") as info:
        select_components(requested, ui_present=False, ui_path="examples/ui", ui_path_given=given)
    assert "examples/ui/package.json" in str(info.value)


@pytest.mark.parametrize("present", [True, False])
def test_an_explicit_list_is_kept_and_needs_no_reason(present):
    chosen = select_components(
        (A, B, A), ui_present=present, ui_path="examples/ui", ui_path_given=False
    )
    assert chosen.components == (B, A)
    assert chosen.no_ui is None


def test_component_is_a_one_item_alias_of_components():
    assert requested_components((), None) == ()
    assert requested_components((), A) == (A,)
    assert requested_components((A,), A) == (A,)
    assert requested_components((U, B), None) == (B, U)
    with pytest.raises(BrokkrError, match="disagree"):
        requested_components((B, A), A)


@pytest.mark.parametrize(
    ("component", "repository"),
    [
        (A, "ghcr.io/me/brokkr-agent"),
        (A, "ghcr.io/me/agent"),
        (U, "localhost:5000/x/brokkr-ui-demo"),
        (B, "ghcr.io/colliery-io/brokkr-broker"),
    ],
)
def test_an_image_may_go_to_its_own_or_any_other_name(component, repository):
    check_image_name(component, repository)


@pytest.mark.parametrize(
    ("component", "repository"),
    [(A, "ghcr.io/me/brokkr-broker"), (B, "localhost:5000/brokkr-ui"), (U, "x/y/brokkr-agent")],
)
def test_an_image_is_never_pushed_to_another_components_repository(component, repository):
    with pytest.raises(BrokkrError, match="its own address"):
        check_image_name(component, repository)
