"""Supply chain: SBOMs of built images, cosign-format signatures, and their checks.

Rule: may import `ci.rules`, `ci.build` (to read built images) and `ci.registry`
(to attach and read); never `ci.publishing`.
"""
