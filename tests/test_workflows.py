"""The workflow files: pins, permissions, tags and the publish call match the module.

`.ci/run` validates their syntax against the GitHub Actions schema; these tests
check what the schema cannot: the Dagger CLI runs exactly the engine version the
module declares, every action is pinned by commit, only the signing job can
mint an OIDC token, publishes share one queue, Brokkr's reusable images.yml has
no trigger of its own and follows today's tag policy, the callers that
docs/adopting.md gives Brokkr's release, build-and-test and nightly workflows
keep the release gates, rewire the chart jobs and never publish one another's
tags, and the size table reaches the run summary (Brokkr's and this CI's).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from ci.rules import tags as _tags

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


def publish_step() -> dict[str, Any]:
    return next(s for s in steps(load(BROKKR_WORKFLOW)) if s.get("id") == "publish")


def publish_args() -> list[str]:
    return shlex.split(publish_step()["with"]["args"])


def test_brokkr_workflow_calls_this_module_by_reference_on_brokkrs_checkout():
    workflow = load(BROKKR_WORKFLOW)
    module = workflow["env"]["BROKKR_CI_MODULE"]
    assert re.fullmatch(r"github\.com/colliery-io/brokkr-ci@v\d+\.\d+\.\d+", module)
    publish = publish_step()
    assert publish["with"]["module"] == "${{ env.BROKKR_CI_MODULE }}"
    args = publish_args()
    assert args[:2] == ["--source=.", "publish"]
    assert "env://GITHUB_TOKEN" in args
    assert args[-2:] == ["--format", "json"]
    # Values reach the shell through environment variables, never as ${{ }} text.
    assert "${{" not in publish["with"]["args"]
    for step in steps(workflow):
        assert "${{" not in step.get("run", ""), step.get("name")


def test_brokkr_workflow_keeps_the_commit_tag_that_promote_needs():
    args = publish_args()
    # A push to main keeps its main-sha-<7 hex> tag (the seed's policy): a release
    # promotes exactly that image, so dropping it (--no-commit-tag, Brokkr's v0.9.1
    # reference) would make every release a rebuild.
    assert "--no-commit-tag" not in args
    # --nightly and --components only when the caller asks for them: whole flags from
    # the inputs, empty (no argument) otherwise.
    assert {"$NIGHTLY_FLAG", "$COMPONENTS_FLAG"} <= set(args)
    env = publish_step()["env"]
    assert env["NIGHTLY_FLAG"] == "${{ inputs.nightly && '--nightly' || '' }}"
    assert env["COMPONENTS_FLAG"] == (
        "${{ inputs.components != '' && format('--components={0}', inputs.components) || '' }}"
    )


def test_brokkr_workflow_has_no_trigger_of_its_own():
    # A reusable workflow: only Brokkr's callers decide when it publishes, so it can
    # never publish the same tags beside one of them.
    on = load(BROKKR_WORKFLOW)["on"]
    assert set(on) == {"workflow_call"}
    inputs = on["workflow_call"]["inputs"]
    assert inputs["nightly"] == {**inputs["nightly"], "type": "boolean", "default": False}
    assert inputs["components"] == {**inputs["components"], "type": "string", "default": ""}
    text = BROKKR_WORKFLOW.read_text()
    assert "develop" not in text  # Brokkr has main, not develop


def test_the_run_summary_gets_the_size_table_beside_brokkrs_reference_sizes():
    workflow = load(BROKKR_WORKFLOW)
    publish = workflow["jobs"]["publish"]["steps"]
    names = [s.get("name") for s in publish]
    sizes = next(s for s in publish if s.get("name") == "Image sizes")
    assert names.index("Image sizes") > names.index("Publish")
    assert re.search(r'call -m "\$BROKKR_CI_MODULE" sizes\b', sizes["run"])
    assert sizes["env"] == {"GITHUB_TOKEN": "${{ secrets.GITHUB_TOKEN }}"}
    assert "--reference" in sizes["run"]
    assert "$GITHUB_STEP_SUMMARY" in sizes["run"]
    # Each component once, at the digest publish read back.
    assert 'group_by(.component) | map(.[0].address + "@" + .[0].digest)' in sizes["run"]
    digests = next(s for s in publish if s.get("id") == "digests")
    assert "no_ui_image" in digests["run"]


def test_tag_and_branch_publishes_share_one_queue():
    concurrency = load(BROKKR_WORKFLOW)["jobs"]["publish"]["concurrency"]
    group = concurrency["group"]
    # Not keyed on the ref or the calling workflow: one constant group outside pull
    # requests, so release, main and nightly publishes never run at once.
    assert "github.ref" not in group
    assert "github.workflow" not in group
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
    images_group = load(BROKKR_WORKFLOW)["jobs"]["publish"]["concurrency"]["group"]
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
    assert (
        "'brokkr-images-publish'"
        in load(BROKKR_WORKFLOW)["jobs"]["publish"]["concurrency"]["group"]
    )


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


# -- the callers in Brokkr's workflows, as docs/adopting.md gives them -------------------

ADOPTING = ROOT / "docs" / "adopting.md"
CALLER_BLOCK = re.compile(
    r"```yaml\n# \.github/workflows/(?P<name>[\w-]+\.yml)\n(?P<body>.*?)```", re.S
)
# Brokkr's gates in front of a release (release.yml at df0be43): the tag matches every
# package version, then the test suites (setup -> unit/integration -> e2e).
RELEASE_GATES = {"verify-version", "unit_tests", "integration_tests", "e2e_tests"}
CALLED = "./.github/workflows/images.yml"
# Each caller's triggers (Brokkr's `on:` at df0be43) as the refs a run gets.
TRIGGERS = {
    "release.yml": ["refs/tags/v1.2.3", "refs/tags/v1.3.0-rc.1"],
    "build-and-test.yml": ["refs/heads/main", "refs/pull/7/merge"],
    "nightly.yml": ["refs/heads/main"],
}


def callers() -> dict[str, dict[str, Any]]:
    """Brokkr workflow name -> the jobs docs/adopting.md tells it to have."""
    found = {}
    for match in CALLER_BLOCK.finditer(ADOPTING.read_text()):
        found[match["name"]] = yaml.safe_load(match["body"])["jobs"]
    return found


def calls(jobs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {name: job for name, job in jobs.items() if job.get("uses") == CALLED}


def needs(job: dict[str, Any]) -> set[str]:
    value = job.get("needs", [])
    return {value} if isinstance(value, str) else set(value)


def test_the_guide_gives_a_caller_for_each_of_brokkrs_image_workflows():
    found = callers()
    assert set(found) == set(TRIGGERS)
    for name, jobs in found.items():
        assert len(calls(jobs)) == 1, name


def test_a_release_publish_waits_for_verify_version_and_the_tests():
    jobs = callers()["release.yml"]
    ((name, images),) = calls(jobs).items()
    assert needs(images) >= RELEASE_GATES
    # publish-helm-charts needed publish-container-images: now it needs the call.
    assert needs(jobs["publish-helm-charts"]) == {name}
    assert "build-release-images" not in jobs
    assert "publish-container-images" not in jobs


def test_build_and_test_charts_wait_for_the_images_and_forks_publish_nothing():
    jobs = callers()["build-and-test.yml"]
    ((name, images),) = calls(jobs).items()
    assert "head.repo.full_name == github.repository" in images["if"]
    assert name in needs(jobs["publish-dev-charts"])
    assert name in needs(jobs["publish-pr-charts"])
    assert not {"build-images", "merge-manifests"} & (
        needs(jobs["publish-dev-charts"]) | needs(jobs["publish-pr-charts"])
    )


def test_the_nightly_publishes_broker_and_agent_from_main_after_the_tests():
    jobs = callers()["nightly.yml"]
    ((name, images),) = calls(jobs).items()
    # The same id as Brokkr's job, which notify-failure and the prune jobs need.
    assert name == "nightly-images"
    assert images["with"] == {"nightly": True, "components": "broker,agent"}
    assert needs(images) >= {"unit_tests", "integration_tests", "e2e_tests"}
    assert images["if"] == "github.ref == 'refs/heads/main'"


def test_no_caller_passes_inputs_images_yml_does_not_take():
    inputs = set(load(BROKKR_WORKFLOW)["on"]["workflow_call"]["inputs"])
    for jobs in callers().values():
        for job in calls(jobs).values():
            assert set(job.get("with", {})) <= inputs


def test_callers_grant_what_images_yml_asks_for():
    workflow = load(BROKKR_WORKFLOW)
    asked: dict[str, str] = {}
    for job in workflow["jobs"].values():
        asked.update(job["permissions"])
    for jobs in callers().values():
        for job in calls(jobs).values():
            assert job["permissions"] == asked


def test_no_two_workflows_publish_the_same_tags():
    # The tags each caller's runs get, computed by the module's own rules with the flags
    # images.yml passes (--nightly when the caller says so).
    commit_tag = "--no-commit-tag" not in publish_args()
    owner: dict[str, str] = {}
    for workflow, jobs in callers().items():
        (job,) = calls(jobs).values()
        nightly = job.get("with", {}).get("nightly", False)
        for ref in TRIGGERS[workflow]:
            for tag in _tags.compute_tags(
                ref, sha="0123456789abcdef", nightly=nightly, commit_tag=commit_tag
            ):
                assert owner.setdefault(tag.name, workflow) == workflow, (
                    f"{workflow} and {owner[tag.name]} both publish {tag.name}"
                )
    assert {"1.2.3", "latest", "main", "main-sha-0123456", "pr-7", "nightly"} <= set(owner)


def test_the_guide_keeps_brokkrs_branch():
    text = ADOPTING.read_text()
    assert "develop" not in text
    assert "refs/heads/main" in text


def test_ci_cancels_superseded_pull_request_runs_only():
    concurrency = load(ROOT / ".github" / "workflows" / "ci.yml")["concurrency"]
    assert "github.ref" in concurrency["group"]  # one group per pull request or branch
    # Cancelled only for pull requests: a tag's or branch's run always finishes.
    assert concurrency["cancel-in-progress"] == "${{ github.event_name == 'pull_request' }}"
    assert concurrency["queue"] == "max"  # every waiting tag or branch run is kept
