"""The module as the engine sees it: registration and calls through `get_result`."""

import json
import uuid
from pathlib import Path

import pytest
from dagger import dag
from dagger.mod._exceptions import FunctionError

from ci.main import SOURCE_IGNORE
from ci.rules import tags as _tags
from tests.support.registry_proxy import RegistryProxy
from tests.support.registry_server import RegistryServer, push_image
from tests.support.standin import ROOT, ModuleCaller, ModuleDef, PatternMatcher, StandInEngine


async def _module(brokkr: ModuleCaller) -> ModuleDef:
    return await brokkr.typedefs()


async def test_module_registers_brokkr_as_main_object(brokkr: ModuleCaller):
    mod = await _module(brokkr)
    main = mod.objects["Brokkr"]
    assert main.description
    assert main.constructor is not None
    source = main.constructor.args["source"]
    assert source.type == "Directory"
    assert source.default_path == "/"
    assert source.ignore == SOURCE_IGNORE


# Since Dagger v0.19.4 a function's result is cached for up to 7 days and a hit skips
# the code: whatever reads or writes a registry must never be cached.
REGISTRY_FUNCTIONS = {
    ("Brokkr", "inspect"),
    ("Brokkr", "list_tags"),
    ("Brokkr", "sizes"),
    ("Brokkr", "publish"),
    ("Brokkr", "verify"),
    ("Brokkr", "prune"),
    ("Brokkr", "promote"),
    ("Image", "publish"),
}
# Pure functions of their inputs (the source is content-addressed): the default cache.
# build, stage and image may read the dependency cache (--dependency-cache), which never
# changes what they build (the key covers every input of the cook, the image is used by
# digest): a result Dagger kept is the same image, so they keep the default cache too.
PURE_FUNCTIONS = {
    ("Brokkr", "tags"),
    ("Brokkr", "build"),
    ("Brokkr", "stage"),
    ("Brokkr", "image"),
    ("Brokkr", "sbom"),
    ("Image", "tarball"),
    ("ImageInfo", "summary"),
}


async def test_registry_functions_are_never_cached(brokkr: ModuleCaller):
    mod = await _module(brokkr)
    policies = {
        (obj.name, fn.name): fn.cache_policy
        for obj in mod.objects.values()
        for fn in obj.functions.values()
    }
    # Every function is classified: a new one must say whether it talks to a registry.
    assert set(policies) == REGISTRY_FUNCTIONS | PURE_FUNCTIONS
    assert {name: policies[name] for name in REGISTRY_FUNCTIONS} == dict.fromkeys(
        REGISTRY_FUNCTIONS, "Never"
    )
    assert {name: policies[name] for name in PURE_FUNCTIONS} == dict.fromkeys(PURE_FUNCTIONS)


# What a working checkout holds besides the source: none of it reaches the engine.
JUNK = [
    ".venv/lib/python3.11/site.py",
    "venv/bin/python",
    "examples/ui/.venv/pyvenv.cfg",
    "sdk/pyproject.toml",
    ".pytest_cache/v/cache/nodeids",
    "crates/brokkr-broker/.ruff_cache/0.17/x",
    ".hypothesis/examples/x",
    ".mypy_cache/3.11/x.json",
    "crates/brokkr-agent/src/__pycache__/x.pyc",
    ".cache/skopeo/x",
    "target/debug/brokkr-broker",
    "crates/brokkr-broker/target/x",
    "examples/ui/node_modules/react/index.js",
    ".git/HEAD",
    ".dagger/x",
]
KEPT = [
    "Cargo.toml",
    "crates/brokkr-broker/src/main.rs",
    "crates/brokkr-sdk/src/lib.rs",
    "crates/brokkr-agent/src/sdk/mod.rs",
    "crates/brokkr-agent/src/cache/mod.rs",
    "examples/ui/venv.js",
    "examples/ui/src/App.js",
]


async def test_the_source_upload_leaves_out_environments_caches_and_build_output(
    engine: StandInEngine, tmp_path: Path
):
    for rel in JUNK + KEPT:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(rel)
    # As the engine loads `source` (DefaultPath + Ignore): the host folder minus SOURCE_IGNORE.
    source = dag.host().directory(str(tmp_path), exclude=SOURCE_IGNORE)
    assert sorted(await source.glob("**/*")) == sorted(KEPT)


def test_the_module_upload_leaves_out_environments_and_caches():
    # The engine loads a module's files as host.directory(include=["dagger.json", "*",
    # *dagger.json include]) (core/schema/modulesource.go): the last matching pattern wins.
    config = json.loads((ROOT / "dagger.json").read_text())
    loaded = PatternMatcher(["dagger.json", "*", *config["include"]])
    for rel in ["dagger.json", "pyproject.toml", "uv.lock", "README.md", "ci/main.py"]:
        assert loaded.matches(rel), rel
    for rel in [*JUNK, "tests/test_main.py", ".ci/run", ".github/workflows/x.yml"]:
        assert not loaded.matches(rel), rel


async def test_every_function_and_argument_is_documented(brokkr: ModuleCaller):
    mod = await _module(brokkr)
    for obj in mod.objects.values():
        assert obj.description, f"{obj.name} has no description"
        for fn in obj.functions.values():
            assert fn.description, f"{obj.name}.{fn.name} has no description"
            for arg in fn.args.values():
                assert arg.description, f"{obj.name}.{fn.name}({arg.name}) has no description"


async def test_tags_function_signature(brokkr: ModuleCaller):
    tags = (await _module(brokkr)).objects["Brokkr"].functions["tags"]
    assert tags.return_type == "[String]"
    assert set(tags.args) == {"ref", "sha", "pr", "released", "nightly", "no_commit_tag"}
    assert tags.args["pr"].optional
    assert tags.args["released"].type == "[String]"
    assert tags.args["nightly"].type == "Boolean"
    assert tags.args["no_commit_tag"].type == "Boolean"


async def test_dagger_call_tags_under_todays_policy(brokkr: ModuleCaller):
    # dagger call tags --ref refs/heads/main --no-commit-tag ; ... --nightly
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert await brokkr.call("tags", ref="refs/heads/main", sha=sha) == [
        "main",
        "main-sha-0123456",
    ]
    assert await brokkr.call("tags", ref="refs/heads/main", no_commit_tag=True) == ["main"]
    assert await brokkr.call("tags", ref="refs/heads/main", sha=sha, nightly=True) == ["nightly"]
    with pytest.raises(FunctionError, match="never tags a release"):
        await brokkr.call("tags", ref="refs/tags/v1.2.3", nightly=True)


async def test_dagger_call_tags_for_a_release(brokkr: ModuleCaller):
    # dagger call tags --ref refs/tags/v1.2.3
    assert await brokkr.call("tags", ref="refs/tags/v1.2.3") == ["1.2.3", "1.2", "1", "latest"]


async def test_tags_through_the_engine_match_the_pure_rules(brokkr: ModuleCaller):
    cases = [
        {"ref": "refs/tags/v1.2.3-rc.1"},
        {"ref": "refs/heads/feature/Login", "sha": "0123456789abcdef0123456789abcdef01234567"},
        {"ref": "refs/pull/42/merge"},
        {"pr": 7},
        {"ref": "refs/tags/v1.2.4", "released": ["v1.3.0", "2.0.0"]},
    ]
    for inputs in cases:
        expected = [
            t.name
            for t in _tags.compute_tags(
                inputs.get("ref", ""),
                sha=inputs.get("sha", ""),
                pr=inputs.get("pr"),
                released=inputs.get("released", ()),
            )
        ]
        assert await brokkr.call("tags", **inputs) == expected, inputs


async def test_bad_ref_is_a_clear_error(brokkr: ModuleCaller):
    with pytest.raises(FunctionError) as info:
        await brokkr.call("tags", ref="refs/weird/x")
    assert "refs/tags/" in str(info.value)
    assert "refs/heads/" in str(info.value)


# -- the build functions, called as `dagger call` calls them ----------------------

RECIPE = '{"skeleton": "fixture"}'


async def test_build_broker_for_the_engine_platform(brokkr: ModuleCaller, engine: StandInEngine):
    # dagger call build --component broker
    engine.container_files["/app/recipe.json"] = RECIPE
    node = engine.node(await brokkr.call("build", component="BROKER"))
    assert node.platform("?") == engine.default_platform
    assert node.base_image() == "debian:bookworm-slim"
    assert node.last("withEntrypoint").args["args"] == ["brokkr-broker"]
    assert any(n.args["path"] == "/usr/local/bin/brokkr-broker" for n in node.calls("withFile"))
    assert [n.args["port"] for n in node.calls("withExposedPort")] == [3000]


async def test_build_agent_for_arm64_cross_compiles(brokkr: ModuleCaller, engine: StandInEngine):
    # dagger call build --component agent --platform linux/arm64
    engine.container_files["/app/recipe.json"] = RECIPE
    node = engine.node(await brokkr.call("build", component="AGENT", platform="linux/arm64"))
    assert node.platform("?") == "linux/arm64"
    (copy,) = [n for n in node.calls("withFile") if n.args["path"] == "/usr/local/bin/brokkr-agent"]
    builder = copy.args["source"].parent
    assert builder.platform("?") == "linux/amd64"  # the engine's own platform
    assert any("aarch64-unknown-linux-gnu" in args for args in builder.execs())


async def test_stage_returns_the_cacher(brokkr: ModuleCaller, engine: StandInEngine):
    # dagger call stage --component broker --stage cacher
    engine.container_files["/app/recipe.json"] = RECIPE
    node = engine.node(await brokkr.call("stage", component="BROKER", stage="CACHER"))
    cook = [a for a in node.execs() if a[:3] == ["cargo", "chef", "cook"]]
    assert cook
    assert not any(n.field == "withDirectory" and n.args["path"] == "/app" for n in node.chain())


async def test_image_has_one_variant_per_platform(brokkr: ModuleCaller, engine: StandInEngine):
    # dagger call image --component ui
    (image,) = await brokkr.call("image", component="UI")
    assert image["platforms"] == ["linux/amd64", "linux/arm64"]
    variants = [engine.node(v) for v in image["variants"]]
    assert [v.platform("?") for v in variants] == ["linux/amd64", "linux/arm64"]
    tarball = engine.node(await brokkr.call("tarball", parent="Image", state=image))
    assert tarball.field == "asTarball"
    assert tarball.args["platformVariants"] == variants[1:]


async def test_bad_platform_is_refused_before_any_work(brokkr: ModuleCaller, engine: StandInEngine):
    # (A bad --component never reaches the module: the CLI offers only the enum's members.)
    with pytest.raises(FunctionError, match="linux/s390x"):
        await brokkr.call("build", component="BROKER", platform="linux/s390x")
    assert engine.evaluated == []


async def test_function_signatures_as_the_cli_sees_them(brokkr: ModuleCaller):
    mod = await brokkr.typedefs()
    assert mod.enums["Component"] == ["BROKER", "AGENT", "UI"]
    assert mod.enums["Stage"] == ["PLANNER", "CACHER", "BUILDER", "RUNTIME", "CONSOLE"]
    fns = mod.objects["Brokkr"].functions
    assert {"tags", "build", "stage", "image", "publish", "inspect", "list_tags", "sizes"} <= set(
        fns
    )
    assert fns["build"].return_type == "Container"
    assert fns["build"].args["platform"].type == "Platform"
    assert fns["build"].args["platform"].optional
    assert fns["image"].return_type == "[Image]"
    assert fns["image"].args["components"].type == "[Component]"
    assert fns["image"].args["component"].optional
    assert fns["inspect"].return_type == "ImageInfo"
    assert {"tarball", "publish"} <= set(mod.objects["Image"].functions)


@pytest.mark.registry
async def test_inspect_list_tags_and_sizes_read_a_real_registry(
    brokkr: ModuleCaller, registry: RegistryServer
):
    repo = f"m{uuid.uuid4().hex[:8]}/brokkr-broker"
    digest = push_image(registry.base_url, repo, ["1.2.3", "latest"], seed="inspect")
    info = await brokkr.call("inspect", address=registry.address(repo, "1.2.3"))
    assert info["digest"] == digest
    assert [p["platform"] for p in info["platforms"]] == ["linux/amd64", "linux/arm64"]
    tags = await brokkr.call("list_tags", repository=f"{registry.registry}/{repo}")
    assert tags == ["1.2.3", "latest"]
    table = await brokkr.call("sizes", address=registry.address(repo, "latest"))
    assert "linux/amd64" in table
    assert "linux/arm64" in table
    assert "reference" not in table
    # dagger call sizes --address … --reference: Brokkr's documented size beside each figure.
    table = await brokkr.call("sizes", address=registry.address(repo, "latest"), reference=True)
    rows = table.splitlines()
    assert rows[0].endswith("| Brokkr's reference |")
    assert rows[2].startswith(f"| {registry.address(repo, 'latest')} | linux/amd64 |")
    assert rows[2].endswith("| ~60 MB |")
    assert rows[3].endswith("| ~58 MB |")


async def test_sizes_reads_only_the_manifests(brokkr: ModuleCaller, registry: RegistryServer):
    # inspect also asks, per manifest, for SBOM referrers and a signature tag; sizes
    # shows neither, so it makes none of those requests.
    repo = f"m{uuid.uuid4().hex[:8]}/brokkr-agent"
    push_image(registry.base_url, repo, "1.0.0", seed="sizes")

    def lookups(proxy: RegistryProxy) -> list[str]:
        return [path for _, path, _ in proxy.requests if "/referrers/" in path or "sha256-" in path]

    with RegistryProxy(upstream=registry) as proxy:
        table = await brokkr.call("sizes", address=proxy.address(repo, "1.0.0"))
        assert "| linux/arm64 |" in table
        assert lookups(proxy) == []
        assert any("/manifests/" in path for _, path, _ in proxy.requests)
        await brokkr.call("inspect", address=proxy.address(repo, "1.0.0"))
        assert lookups(proxy) != []


# A secret the engine cannot resolve (here: an env:// variable that is not set) and a
# file it cannot read: the user learns which flag, never the engine's error or a value.
UNSET = "env://BROKKR_TEST_UNSET"


@pytest.mark.parametrize(
    ("function", "flag", "args"),
    [
        ("inspect", "--password", {"address": "127.0.0.1:9/x/y:1", "username": "bot"}),
        ("list_tags", "--password", {"repository": "127.0.0.1:9/x/y", "username": "bot"}),
        ("sizes", "--password", {"address": "127.0.0.1:9/x/y:1", "username": "bot"}),
        ("publish", "--password", {"sha": "0" * 40, "pr": 1, "username": "bot"}),
        ("publish", "--signing-key", {"sha": "0" * 40, "pr": 1}),
        ("publish", "--signing-password", {"sha": "0" * 40, "pr": 1, "signing_key": "KEY"}),
    ],
)
async def test_an_unresolvable_secret_names_its_flag(
    brokkr: ModuleCaller, engine: StandInEngine, function: str, flag: str, args: dict
):
    engine.env["KEY"] = "-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"
    if args.get("signing_key") == "KEY":
        args = {**args, "signing_key": await dag.secret("env://KEY").id()}
    unresolvable = await dag.secret(UNSET).id()
    name = flag.removeprefix("--").replace("-", "_")
    with pytest.raises(FunctionError) as info:
        await brokkr.call(function, **args, **{name: unresolvable})
    message = str(info.value)
    assert f"{flag} could not be read: the Dagger engine could not resolve that secret" in message
    assert "stand-in" not in message  # the engine's own error stays out
    assert engine.pushes == []


async def test_an_unreadable_public_key_names_its_flag(
    brokkr: ModuleCaller, engine: StandInEngine, tmp_path: Path
):
    path = tmp_path / "cosign.pub"
    path.write_text("-----BEGIN PUBLIC KEY-----\n")
    engine.fail_when(
        lambda node: node.field == "file" and node.args.get("path") == str(path),
        "open cosign.pub: permission denied",
    )
    key = await dag.host().file(str(path)).id()
    with pytest.raises(FunctionError, match=r"--public-key could not be read: open cosign\.pub"):
        await brokkr.call("verify", address="127.0.0.1:9/x/y:1", public_key=key)
