"""Build stages: Dagger containers for the Rust, console and UI images, start checks,
pushes and the registry service.

Rule: may import `ci.rules` and `ci.errors`/`ci.inputs`; never the registry client,
the supply chain or publishing. Builds graphs; never talks to a registry itself
(pushes go through the engine's `Container.publish`).
"""
