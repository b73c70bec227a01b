"""The one exception type users see: a one-line message, never a traceback."""


class UsageError(Exception):
    """A problem the person running the dashboard can fix (bad URL, unknown viewer...).

    Its message is one line, meant to be shown as is.
    """
