"""Shared pytest set-up.

The Dagger runtime names the module and its main object through the
environment before it imports the module's code; the tests do the same so that
`dagger.mod.Module` registers `Brokkr` as the main object.
"""

import os

os.environ.setdefault("DAGGER_MODULE", "brokkr")
os.environ.setdefault("DAGGER_MAIN_OBJECT", "Brokkr")

# Fixture modules (one import line each).
from tests._registry_server import auth_registry, registry  # noqa: F401
from tests._standin import brokkr, engine, fixture_source, standin_engine  # noqa: F401
