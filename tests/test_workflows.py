"""The workflow files: pins, permissions and the publish call match the module.

`.ci/run` validates their syntax against the GitHub Actions schema; these tests
check what the schema cannot: the Dagger CLI runs exactly the engine version the
module declares, every action is pinned by commit, only the signing job can
mint an OIDC token, and tag and branch publishes share one queue.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BROKKR_WORKFLOW = ROOT / "workflows" / "brokkr" / "images.yml"
CI_WORKFLOWS = sorted((ROOT / ".github" / "workflows").glob("*.yml"))
DAGGER_ACTION = "dagger/dagger-for-github"
PINNED = re.compile(r"[A-Za-z0-9_.-]+/[A-Za-z0-9_./-]+@[0-9a-f]{40}")


def load(path: Path) -> dict[str, Any]:
    # PyYAML reads the key `on` as True (YAML 1.1); put it back under its name.
    data = yaml.safe_load(path.read_text())
    if True in data:
        data["on"] = data.pop(True)
    return data


def steps(workflow: dict[str, Any]) -> list[dict[str, Any]]:
    return [step for job in workflow["jobs"].values() for step in job.get("steps", [])]


def engine_version() -> str:
    return json.loads((ROOT / "dagger.json").read_text())["engineVersion"]


def test_there_are_workflows_to_check():
    assert BROKKR_WORKFLOW.is_file()
    assert CI_WORKFLOWS, "no workflow in .github/workflows"


@pytest.mark.parametrize("path", [BROKKR_WORKFLOW, *CI_WORKFLOWS], ids=lambda p: p.name)
def test_every_action_is_pinned_by_commit(path):
    for step in steps(load(path)):
        if "uses" in step:
            assert PINNED.fullmatch(step["uses"]), f"{path.name}: {step['uses']} is not pinned"


def test_brokkr_workflow_runs_the_engine_version_of_dagger_json():
    dagger_steps = [
        s for s in steps(load(BROKKR_WORKFLOW)) if s.get("uses", "").startswith(DAGGER_ACTION)
    ]
    assert dagger_steps
    for step in dagger_steps:
        assert step["with"]["version"] == engine_version()


def test_ci_installs_the_engine_version_read_from_dagger_json():
    workflow = load(ROOT / ".github" / "workflows" / "ci.yml")
    engine = workflow["jobs"]["engine"]
    read = next(s for s in engine["steps"] if s.get("id") == "engine")
    assert "engineVersion" in read["run"]
    assert "dagger.json" in read["run"]
    install = next(s for s in engine["steps"] if s.get("uses", "").startswith(DAGGER_ACTION))
    assert install["with"] == {"version": "${{ steps.engine.outputs.version }}"}


def test_brokkr_workflow_calls_this_module_by_reference_on_brokkrs_checkout():
    workflow = load(BROKKR_WORKFLOW)
    module = workflow["env"]["BROKKR_CI_MODULE"]
    assert re.fullmatch(r"github\.com/colliery-io/brokkr-ci@\S+", module)
    publish = next(s for s in steps(workflow) if s.get("id") == "publish")
    assert publish["with"]["module"] == "${{ env.BROKKR_CI_MODULE }}"
    args = publish["with"]["args"].split()
    assert args[:2] == ["--source=.", "publish"]
    assert "env://GITHUB_TOKEN" in args
    assert args[-2:] == ["--format", "json"]
    # Values reach the shell through environment variables, never as ${{ }} text.
    assert "${{" not in publish["with"]["args"]


def test_brokkr_workflow_triggers():
    on = load(BROKKR_WORKFLOW)["on"]
    assert on["push"] == {"tags": ["v*"], "branches": ["main", "develop"]}
    assert "labeled" in on["pull_request"]["types"]
    condition = load(BROKKR_WORKFLOW)["jobs"]["publish"]["if"]
    assert "'publish-images'" in condition


def test_tag_and_branch_publishes_share_one_queue():
    concurrency = load(BROKKR_WORKFLOW)["concurrency"]
    group = concurrency["group"]
    # Not keyed on the ref: one constant group outside pull requests.
    assert "github.ref" not in group
    assert "'brokkr-images-publish'" in group
    assert concurrency["queue"] == "max"
    assert concurrency["cancel-in-progress"] is False


def test_only_the_signing_job_mints_oidc_tokens():
    workflow = load(BROKKR_WORKFLOW)
    assert workflow["permissions"] == {}
    publish = workflow["jobs"]["publish"]["permissions"]
    assert publish == {"contents": "read", "packages": "write"}
    sign = workflow["jobs"]["sign"]
    assert sign["permissions"]["id-token"] == "write"
    assert sign["permissions"]["attestations"] == "write"
    runs = " ".join(s.get("run", "") for s in sign["steps"])
    assert "cosign sign --yes --recursive" in runs
    attest = next(s for s in sign["steps"] if "attest-build-provenance" in s.get("uses", ""))
    assert attest["with"]["push-to-registry"] is True
    assert attest["with"]["subject-digest"] == "${{ matrix.image.digest }}"


def test_ci_cancels_superseded_pull_request_runs_only():
    concurrency = load(ROOT / ".github" / "workflows" / "ci.yml")["concurrency"]
    assert "github.ref" in concurrency["group"]  # one group per pull request or branch
    # Cancelled only for pull requests: a tag's or branch's run always finishes.
    assert concurrency["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"
    assert concurrency["queue"] == "max"  # every waiting tag or branch run is kept
