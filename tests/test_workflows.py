"""The workflow files: pins, permissions and the publish call match the module.

`.ci/run` validates their syntax against the GitHub Actions schema; these tests
check what the schema cannot: the Dagger CLI runs exactly the engine version the
module declares, every action is pinned by commit, only the signing job can
mint an OIDC token, and tag and branch publishes share one queue.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
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


LIFECYCLE_WORKFLOW = ROOT / "workflows" / "brokkr" / "lifecycle.yml"


def dagger_args(step: dict[str, Any]) -> list[str]:
    return step["with"]["args"].split()


def test_lifecycle_workflow_is_pinned_like_the_publish_workflow():
    workflow = load(LIFECYCLE_WORKFLOW)
    assert workflow["env"]["BROKKR_CI_MODULE"] == load(BROKKR_WORKFLOW)["env"]["BROKKR_CI_MODULE"]
    assert workflow["permissions"] == {}
    for step in steps(workflow):
        assert PINNED.fullmatch(step["uses"])
        assert step["uses"].split("@")[0] == DAGGER_ACTION
        assert step["with"]["version"] == engine_version()
        assert step["with"]["module"] == "${{ env.BROKKR_CI_MODULE }}"
        assert "${{" not in step["with"]["args"]  # values come from the environment
        assert "env://GITHUB_TOKEN" in dagger_args(step)
    for job in workflow["jobs"].values():
        assert job["permissions"] == {"contents": "read", "packages": "write"}


def test_a_closed_pull_request_prunes_its_images():
    workflow = load(LIFECYCLE_WORKFLOW)
    assert workflow["on"]["pull_request"] == {"types": ["closed"]}
    job = workflow["jobs"]["prune-pr"]
    assert "github.event_name == 'pull_request'" in job["if"]
    # A fork's pull request never published: its run has nothing to prune.
    assert "head.repo.full_name == github.repository" in job["if"]
    (step,) = job["steps"]
    args = dagger_args(step)
    assert args[:3] == ["prune", "--pr", '"$PR"']
    assert "--components" not in args  # every component
    assert step["env"]["PR"] == "${{ github.event.pull_request.number }}"
    # It waits for a publish of the same pull request (images.yml's group for it).
    assert job["concurrency"] == {
        "group": "brokkr-images-pr-${{ github.event.pull_request.number }}",
        "cancel-in-progress": False,
        "queue": "max",  # a pending publish of the pull request is never dropped
    }
    images_group = load(BROKKR_WORKFLOW)["concurrency"]["group"]
    assert "brokkr-images-pr-{0}" in images_group


def test_a_schedule_prunes_old_branch_images_and_cache_keys():
    workflow = load(LIFECYCLE_WORKFLOW)
    assert workflow["on"]["schedule"]
    job = workflow["jobs"]["prune-old"]
    assert job["if"] == "github.event_name != 'pull_request'"
    runs = [" ".join(dagger_args(s)[:4]) for s in job["steps"]]
    assert runs == [
        "prune --branch main --keep",
        "prune --branch develop --keep",
        "prune --dependency-cache --keep 8",
    ]
    # Never beside a publish or a promote: the publish queue's own group, never cancelled.
    # `queue: max`: joining the queue never cancels a waiting release.
    assert job["concurrency"] == {
        "group": "brokkr-images-publish",
        "cancel-in-progress": False,
        "queue": "max",
    }
    assert "'brokkr-images-publish'" in load(BROKKR_WORKFLOW)["concurrency"]["group"]


def test_a_release_promotes_the_tested_main_image_else_publishes():
    workflow = load(BROKKR_WORKFLOW)
    job = workflow["jobs"]["publish"]
    ids = [s.get("id") for s in job["steps"]]
    assert ids.index("promote") < ids.index("publish")
    promote = job["steps"][ids.index("promote")]
    assert promote["if"] == "startsWith(github.ref, 'refs/tags/v')"
    assert promote["continue-on-error"] is True
    args = dagger_args(promote)
    assert args[0] == "promote"
    assert args[args.index("--sha") + 1] == '"$GITHUB_SHA"'
    assert args[args.index("--ref") + 1] == '"$GITHUB_REF"'
    assert promote["env"]["FROM"] == "${{ steps.tested.outputs.tag }}"
    tested = job["steps"][ids.index("tested")]
    assert "main-sha-${GITHUB_SHA::7}" in tested["run"]
    publish = job["steps"][ids.index("publish")]
    assert publish["if"] == "steps.promote.outcome != 'success'"
    # The promoted digests are signed again; their provenance is the main push's.
    assert job["outputs"]["promoted"] == "${{ steps.promote.outcome == 'success' }}"
    sign = workflow["jobs"]["sign"]
    provenance = next(s for s in sign["steps"] if "attest-build-provenance" in s.get("uses", ""))
    assert provenance["if"] == "needs.publish.outputs.promoted != 'true'"


@pytest.mark.skipif(shutil.which("jq") is None, reason="jq is not installed")
def test_the_promoted_digests_reach_the_sign_job(tmp_path: Path):
    """The digests step turns promote's `repository:tag@digest` lines into the images."""
    job = load(BROKKR_WORKFLOW)["jobs"]["publish"]
    step = next(s for s in job["steps"] if s.get("id") == "digests")
    digest = "sha256:" + "ab" * 32
    repo = "ghcr.io/colliery-io/brokkr-broker"
    promoted = "\n".join(
        [f"{repo}:{tag}@{digest}" for tag in ("1.2.3", "1.2", "1", "latest")]
        + [f"# promoted {repo}:main-sha-0123456@{digest} (no build)", "# index x: signed"]
    )
    output, summary = tmp_path / "output", tmp_path / "summary"
    env = {
        "PATH": os.environ["PATH"],
        "PROMOTED": promoted,
        "PROMOTE_OUTCOME": "success",
        "PUBLISHED": "",
        "GITHUB_OUTPUT": str(output),
        "GITHUB_STEP_SUMMARY": str(summary),
    }
    subprocess.run(["bash", "-e", "-c", step["run"]], env=env, cwd=tmp_path, check=True)
    images = output.read_text().strip().removeprefix("images=")
    assert json.loads(images) == [{"repository": repo, "digest": digest}]
    assert f"`{repo}:latest`" in summary.read_text()
