"""The module as the engine sees it: registration and calls through `get_result`."""

import pytest
from dagger.mod._exceptions import FunctionError

from ci import _tags
from tests._standin import ModuleCaller, ModuleDef


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
    assert {"**/target", "**/node_modules", ".git"} <= set(source.ignore)


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
    assert set(tags.args) == {"ref", "sha", "pr", "released"}
    assert tags.args["pr"].optional
    assert tags.args["released"].type == "[String]"


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
