"""Shared pytest set-up.

The Dagger runtime names the module and its main object through the
environment before it imports the module's code; the tests do the same so that
`dagger.mod.Module` registers `Brokkr` as the main object.
"""

import os

os.environ.setdefault("DAGGER_MODULE", "brokkr")
os.environ.setdefault("DAGGER_MAIN_OBJECT", "Brokkr")

# Everything below comes after the environment above (dagger.mod reads it at import).
from hypothesis import HealthCheck, settings

# Property tests judge results, not speed: on a loaded 2-core CI machine a
# per-example deadline only makes them flaky.
settings.register_profile("brokkr", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("brokkr")

# Fixture modules (one import line each).
from tests._registry_server import auth_registry, registry  # noqa: E402, F401
from tests._standin import brokkr, engine, fixture_source, standin_engine  # noqa: E402, F401
