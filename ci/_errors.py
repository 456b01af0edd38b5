"""The one error type of brokkr-ci."""


class BrokkrError(Exception):
    """A problem the user can act on: bad input, a missing crate, a refused push.

    Its message is what `dagger call` prints, so it says what was wrong and what
    is accepted; it never carries a secret.
    """
