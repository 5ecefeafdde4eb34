"""The one exception type that reaches a user as a one-line message."""


class KaogenError(Exception):
    """A problem with the user's input (file, config, server...), explained in one line.

    The CLI prints `Error: <message>` and exits with status 1; no traceback is shown.
    Library users can catch it like any exception.
    """

    def __init__(self, message: str):
        super().__init__(" ".join(str(message).split()))  # always one line
