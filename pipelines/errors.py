"""Errors a user can fix, reported as one line by the CLI instead of a stack trace."""


class TradelakeError(Exception):
    """An expected failure (bad configuration, unreachable broker, failed build).

    The CLI prints ``tradelake: error: <message>`` and exits with ``exit_code``; anything
    that is not a TradelakeError is a bug and keeps its traceback.
    """

    exit_code = 2
