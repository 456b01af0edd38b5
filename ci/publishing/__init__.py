"""Publishing and inspecting: the operations a user runs against a registry.

Rule: the top layer below `ci.main`; may import every other layer, and nothing
imports it but `ci.main`.
"""
