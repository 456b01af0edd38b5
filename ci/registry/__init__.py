"""The registry client: bounded HTTP, logins and tokens, the OCI distribution API,
referrers.

Rule: never imports `dagger` (it runs the same on a laptop, in the engine and in
tests); may import `ci.rules` and `ci.errors` only. Every answer is bounded in size
and time, and credentials go only to the registry the user named.
"""
