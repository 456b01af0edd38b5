"""The module installs and loads the way Dagger's Python runtime installs and loads it.

What the runtime does (dagger/dagger at v0.21.8, ``sdk/python/runtime/main.go`` and
``toolchains/engine-dev/build/sdk.go``):

* it vendors the SDK's source into the module's ``sdk/`` folder: ``pyproject.toml``
  (whose ``dagger-io`` version is ``0.0.0``), ``uv.lock``, ``src/**/*.py`` and
  ``*.typed`` without ``dagger/_engine`` and ``dagger/provisioning``, ``codegen/`` and
  ``runtime/``;
* it installs with uv 0.10.3 (``images/uv/Dockerfile``), with ``UV_LINK_MODE=copy``,
  ``UV_NATIVE_TLS=1``, ``UV_PROJECT_ENVIRONMENT=/opt/venv`` and
  ``UV_COMPILE_BYTECODE=1``;
* with a ``uv.lock`` it runs ``uv lock`` then ``uv sync --no-dev``; without one,
  ``uv pip install -e ./sdk -e .`` then ``uv pip check``;
* it finds the main object through the ``dagger.mod`` entry point
  (``dagger.mod.cli.load_module``).

These tests replay both paths in a temporary copy of the module. ``sdk/`` is built
from the ``dagger-io`` source distribution on PyPI for the engine version in
``dagger.json``, its version set to 0.0.0 as the engine ships it. The sdist leaves
out two things the engine ships: ``codegen/`` (a uv workspace member of the SDK
project, only in its dev group, so the install needs nothing but its project table,
written below as it is at v0.21.8) and ``runtime/`` (Go code the install never
reads). They need PyPI; the sdist and uv's cache are kept in ``.cache/``.

``python -m tests.test_install lock`` rewrites ``uv.lock`` the same way.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tomllib
import urllib.request
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent
CACHE = ROOT / ".cache" / "install-replay"
UV_VERSION = "0.10.3"
INDEX = "https://pypi.org/simple/dagger-io/"
# Every uv command and download is bounded: a hung index fails the test, never the run.
COMMAND_TIMEOUT = 300
DOWNLOAD_TIMEOUT = 60
# The files of the module the install needs; everything else dagger.json leaves out
# or the install never reads.
MODULE_FILES = ("pyproject.toml", "uv.lock", "README.md", "dagger.json")
MODULE_PACKAGE = "ci"

# sdk/python/codegen/pyproject.toml of dagger/dagger at v0.21.8 (not in the sdist).
CODEGEN_PROJECT = """\
[project]
name = "codegen"
version = "0.0.0"
description = "Codegen for the Python SDK"
requires-python = ">= 3.10"
dependencies = ["graphql-core>=3.2.3"]

[build-system]
requires = ["uv_build>=0.8.4,<0.9.0"]
build-backend = "uv_build"
"""

# Run inside the installed environment, outside the module's folder so that `ci` is
# imported from the installed (editable) package, as the runtime's entry point does.
LOAD_SCRIPT = """
import importlib.metadata, json
import dagger.mod
from dagger.mod.cli import get_entry_point, load_module
ep = get_entry_point()
mod = load_module()
print(json.dumps({
    "entry_point": ep.value,
    "module_type": type(mod).__module__ + "." + type(mod).__qualname__,
    "is_module": isinstance(mod, dagger.mod.Module),
    "main": mod.main_cls.__name__,
    "main_file": importlib.import_module(mod.main_cls.__module__).__file__,
    "sdk_version": importlib.metadata.version("dagger-io"),
    "sdk_file": dagger.__file__,
}))
"""


# -- building the module copy ---------------------------------------------------


def engine_sdk_version() -> str:
    """The ``dagger-io`` version the engine named in dagger.json bundles (v0.21.11 -> 0.21.11)."""
    version = str(json.loads((ROOT / "dagger.json").read_text())["engineVersion"])
    return version.removeprefix("v")


def uv_binary() -> Path:
    """uv from the test extra, checked to be the runtime's release."""
    uv = Path(sys.executable).parent / "uv"
    found = shutil.which("uv") if not uv.is_file() else str(uv)
    if not found:
        pytest.fail(f"uv {UV_VERSION} is missing: install the test extra (.[test])")
    out = subprocess.run(
        [found, "--version"], capture_output=True, text=True, check=True, timeout=30
    )
    assert out.stdout.split()[1] == UV_VERSION, f"{found} is {out.stdout.strip()}"
    return Path(found)


def sdk_sdist(version: str) -> Path:
    """The ``dagger-io`` sdist from PyPI, checked against the index's sha256, cached."""
    target = CACHE / f"dagger_io-{version}.tar.gz"
    if target.is_file():
        return target
    CACHE.mkdir(parents=True, exist_ok=True)
    with urllib.request.urlopen(INDEX, timeout=DOWNLOAD_TIMEOUT) as page:
        html = page.read().decode()
    name = re.escape(f"dagger_io-{version}.tar.gz")
    found = re.search(rf'href="(https://[^"#]+/{name})#sha256=([0-9a-f]{{64}})"', html)
    assert found, f"no sdist of dagger-io {version} in {INDEX}"
    url, sha256 = found.groups()
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT) as response:
        data = response.read()
    assert hashlib.sha256(data).hexdigest() == sha256, f"{url}: sha256 mismatch"
    partial = target.with_suffix(".part")
    partial.write_bytes(data)
    partial.replace(target)
    return target


def vendor_sdk(dest: Path, sdist: Path) -> None:
    """Lay out ``dest`` as the engine vendors the SDK into a module's ``sdk/``."""
    keep = re.compile(r"(pyproject\.toml|uv\.lock|LICENSE|README\.md|src/.*\.(py|typed))")
    dropped = ("src/dagger/_engine/", "src/dagger/provisioning/")
    with tarfile.open(sdist) as archive:
        for member in archive.getmembers():
            _, _, rel = member.name.partition("/")
            if not member.isfile() or not keep.fullmatch(rel) or rel.startswith(dropped):
                continue
            data = archive.extractfile(member)
            assert data is not None
            out = dest / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(data.read())
    project = dest / "pyproject.toml"
    text, count = re.subn(r'(?m)^version = "[^"]+"$', 'version = "0.0.0"', project.read_text())
    assert count == 1, "the SDK's pyproject.toml has no single version line"
    project.write_text(text)
    (dest / "codegen").mkdir()
    (dest / "codegen" / "pyproject.toml").write_text(CODEGEN_PROJECT)


def module_copy(dest: Path, *, with_lock: bool = True) -> Path:
    """A copy of the module as the engine sees it, with the vendored ``sdk/``."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in MODULE_FILES:
        if name == "uv.lock" and not with_lock:
            continue
        shutil.copy2(ROOT / name, dest / name)
    shutil.copytree(
        ROOT / MODULE_PACKAGE,
        dest / MODULE_PACKAGE,
        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"),
    )
    vendor_sdk(dest / "sdk", sdk_sdist(engine_sdk_version()))
    return dest


def uv_env(venv: Path, *, python: Path | None = None) -> dict[str, str]:
    """The environment the runtime gives uv, on this machine's Python.

    ``python`` is the interpreter uv uses; for ``uv pip`` it is also the environment
    installed into, so the unlocked path passes the temporary venv's own (never the
    test's: that would install the copy over the running test environment).
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("UV_", "VIRTUAL_ENV"))}
    env.update(
        UV_LINK_MODE="copy",
        UV_NATIVE_TLS="1",
        UV_PROJECT_ENVIRONMENT=str(venv),
        UV_COMPILE_BYTECODE="1",
        UV_CACHE_DIR=str(CACHE / "uv"),
        # The engine's image has Python 3.14; here the test's own interpreter stands in.
        UV_PYTHON=str(python or sys.executable),
    )
    return env


def run_uv(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(uv_binary()), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )


def must(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, (
        f"{' '.join(result.args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    return result.stdout + result.stderr


def load_main_object(venv: Path, elsewhere: Path) -> dict[str, object]:
    """Load the main object through the ``dagger.mod`` entry point, as the runtime does."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGGER_", "PYTHON"))}
    env.update(DAGGER_MODULE="brokkr", DAGGER_MAIN_OBJECT="Brokkr")
    elsewhere.mkdir(exist_ok=True)
    result = subprocess.run(
        [str(venv / "bin" / "python"), "-c", LOAD_SCRIPT],
        cwd=elsewhere,
        env=env,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    must(result)
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_loaded(loaded: dict[str, object], module: Path) -> None:
    assert loaded["entry_point"] == "ci.main:Brokkr"
    assert loaded["is_module"], loaded["module_type"]
    assert loaded["main"] == "Brokkr"
    # The module's own code and the vendored SDK at 0.0.0, not some other install.
    assert Path(str(loaded["main_file"])).is_relative_to(module / MODULE_PACKAGE)
    assert loaded["sdk_version"] == "0.0.0"
    assert Path(str(loaded["sdk_file"])).is_relative_to(module / "sdk")


def unlocked_env(module: Path, venv: Path) -> dict[str, str]:
    """A fresh venv (the runtime's system Python stands here) and uv's env targeting it."""
    must(run_uv(["venv", str(venv)], module, uv_env(venv)))
    return uv_env(venv, python=venv / "bin" / "python")


def pin_runtime_sdk(module: Path) -> None:
    """Pin dagger-io in the copy's runtime dependencies, as it once was."""
    project = module / "pyproject.toml"
    text = project.read_text()
    pinned = text.replace('    "dagger-io",\n', '    "dagger-io>=0.21.8,<0.22",\n', 1)
    assert pinned != text, "no plain dagger-io runtime dependency to pin"
    project.write_text(pinned)


# -- tests ------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _test_environment_untouched():
    """The replay installs into its own venv, never into the one running the tests."""
    yield
    from importlib import metadata

    assert metadata.distribution("dagger-io").version != "0.0.0"
    origin = metadata.distribution("brokkr-ci").read_text("direct_url.json") or ""
    assert str(ROOT) in origin or not origin


def test_runtime_dependencies_are_as_dagger_init_writes_them():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    deps = [Requirement(d) for d in project["project"]["dependencies"]]
    (sdk,) = [d for d in deps if d.name == "dagger-io"]
    assert str(sdk.specifier) == "", "a dagger-io pin breaks the runtime's `uv pip check`"
    assert project["tool"]["uv"]["sources"]["dagger-io"] == {"path": "sdk", "editable": True}
    assert project["project"]["entry-points"]["dagger.mod"] == {"main_object": "ci.main:Brokkr"}
    # The pin lives in the test extra, and admits the SDK the engine bundles.
    test = [Requirement(d) for d in project["project"]["optional-dependencies"]["test"]]
    (pinned,) = [d for d in test if d.name == "dagger-io"]
    assert pinned.specifier.contains(engine_sdk_version())
    (uv,) = [d for d in test if d.name == "uv"]
    assert str(uv.specifier) == f"=={UV_VERSION}"


def test_the_lock_names_the_vendored_sdk():
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    packages = {p["name"]: p for p in lock["package"]}
    assert packages["dagger-io"]["version"] == "0.0.0"
    assert packages["dagger-io"]["source"] == {"editable": "sdk"}
    assert packages["brokkr-ci"]["source"] == {"editable": "."}


@pytest.mark.install
def test_locked_install_as_the_runtime_runs_it(tmp_path: Path):
    module = module_copy(tmp_path / "module")
    venv = tmp_path / "venv"
    env = uv_env(venv)
    committed = (module / "uv.lock").read_text()
    # The committed lock is current (`uv lock --check`), so `uv lock` changes nothing.
    must(run_uv(["lock", "--check"], module, env))
    must(run_uv(["lock"], module, env))
    assert (module / "uv.lock").read_text() == committed
    must(run_uv(["sync", "--no-dev"], module, env))
    assert_loaded(load_main_object(venv, tmp_path / "elsewhere"), module)


@pytest.mark.install
def test_unlocked_install_as_the_runtime_runs_it(tmp_path: Path):
    module = module_copy(tmp_path / "module", with_lock=False)
    venv = tmp_path / "venv"
    env = unlocked_env(module, venv)
    must(run_uv(["pip", "install", "-e", "./sdk", "-e", "."], module, env))
    must(run_uv(["pip", "check"], module, env))
    assert_loaded(load_main_object(venv, tmp_path / "elsewhere"), module)


@pytest.mark.install
def test_a_pinned_sdk_fails_the_unlocked_install(tmp_path: Path):
    module = module_copy(tmp_path / "module", with_lock=False)
    pin_runtime_sdk(module)
    venv = tmp_path / "venv"
    env = unlocked_env(module, venv)
    must(run_uv(["pip", "install", "-e", "./sdk", "-e", "."], module, env))
    check = run_uv(["pip", "check"], module, env)
    assert check.returncode != 0
    assert "`brokkr-ci` requires `dagger-io>=0.21.8,<0.22`" in check.stdout + check.stderr
    assert "`0.0.0` is installed" in check.stdout + check.stderr


def relock() -> None:
    """Rewrite the committed uv.lock against the vendored SDK, as the runtime would lock."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        module = module_copy(Path(tmp) / "module", with_lock=False)
        print(must(run_uv(["lock"], module, uv_env(Path(tmp) / "venv"))))
        shutil.copy2(module / "uv.lock", ROOT / "uv.lock")


if __name__ == "__main__":
    if sys.argv[1:] != ["lock"]:
        sys.exit("usage: python -m tests.test_install lock")
    relock()
