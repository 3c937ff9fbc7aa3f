"""The error type for mistakes a user can fix (bad input, missing files)."""


class RomeError(Exception):
    """A one-line, user-facing error that names the value and the fix.

    The CLI and the app print these without a traceback. Anything else is a bug.
    """
