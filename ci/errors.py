"""The one error type of brokkr-ci (no Dagger, no I/O: every layer may import it)."""


class BrokkrError(Exception):
    """A problem the user can act on: bad input, a missing crate, a refused push.

    Its message is what `dagger call` prints, so it says what was wrong and what
    is accepted; it never carries a secret.
    """


def first_line(error: BaseException | str) -> str:
    """The first line of an engine error (the rest is usually a long trace)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else "unknown error"
