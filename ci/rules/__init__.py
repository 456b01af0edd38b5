"""Pure rules: components, platforms, tags, image references, labels, pinned versions.

Rule: no I/O and no engine calls. Imports only the standard library, `semver`,
`ci.errors` and each other; `dagger` only for the enums the CLI shows
(`Component`, `Stage`). Everything here is tested directly, without an engine.
"""
