"""Shared pytest set-up.

The Dagger runtime names the module and its main object through the
environment before it imports the module's code; the tests do the same so that
`dagger.mod.Module` registers `Brokkr` as the main object.

With `CI=true` (as CI sets it) a test whose loopback registry cannot start
because `docker-registry` is missing fails instead of skipping; the engine
schema is vendored (tests/schema/), so a missing one always fails.
"""

import os
from collections.abc import Generator

import pytest

os.environ.setdefault("DAGGER_MODULE", "brokkr")
os.environ.setdefault("DAGGER_MAIN_OBJECT", "Brokkr")

# Everything below comes after the environment above (dagger.mod reads it at import).
from hypothesis import HealthCheck, settings

# Property tests judge results, not speed: on a loaded 2-core CI machine a
# per-example deadline only makes them flaky.
settings.register_profile("brokkr", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("brokkr")

# Fixture modules: their fixtures are registered as plugins.
# (each after the modules it imports, so that pytest can rewrite its asserts)
pytest_plugins = [
    "tests.support.registry_server",
    "tests.support.standin",
    "tests.support.skopeo",
    "tests.support.publishing",
]

# Fixtures that skip when their program is missing (tests/support/registry_server.py).
REGISTRY_FIXTURES = frozenset({"registry", "auth_registry", "deleting_registry"})


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """With CI=true, a registry test skipped for want of docker-registry is a failure."""
    report = yield
    if (
        os.environ.get("CI") == "true"
        and call.when == "setup"
        and report.skipped
        and REGISTRY_FIXTURES & set(getattr(item, "fixturenames", ()))
        and item.get_closest_marker("skip") is None
        and item.get_closest_marker("skipif") is None
    ):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"CI=true: a missing prerequisite fails, never skips: {reason}"
    return report
