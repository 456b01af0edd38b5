"""Reads of user-given secrets and files through the engine, turning an engine failure
into a `BrokkrError` that names the flag, never the value."""

import dagger

from ci.errors import BrokkrError, first_line


async def read_secret(secret: dagger.Secret, flag: str) -> str:
    """The plaintext of the secret given as `flag` (`--password`, `--signing-key`, …).

    An engine that cannot resolve it (an `env://NAME` that is not set, a file
    that is gone) is a `BrokkrError` naming the flag; the engine's message is
    left out, since a secret provider's error may quote what it read.
    """
    try:
        return await secret.plaintext()
    except dagger.QueryError:
        raise BrokkrError(
            f"{flag} could not be read: the Dagger engine could not resolve that secret "
            "(for env://NAME: is NAME set in the environment of the dagger command?)"
        ) from None


async def read_file(file: dagger.File, flag: str) -> str:
    """The contents of the file given as `flag`; a `BrokkrError` naming the flag if the
    engine cannot read it."""
    try:
        return await file.contents()
    except dagger.QueryError as e:
        raise BrokkrError(f"{flag} could not be read: {first_line(e)}") from None


LOGIN_RULE = (
    "--username and --password go together: pass both (the password as a secret, e.g. "
    "--password env://GITHUB_TOKEN; for GHCR, your GitHub user name), or neither for "
    "anonymous access"
)
"""The one message for a login given by halves (a username without a password, or the
reverse), wherever a registry login is taken."""


def check_login(username: str, password: dagger.Secret | None) -> None:
    """Both or neither of a username and a password secret; nothing is read."""
    if bool(username) != (password is not None):
        raise BrokkrError(LOGIN_RULE)
