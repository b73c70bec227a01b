"""The one exception type users see: a one-line message, never a traceback."""


class UsageError(Exception):
    """A problem the person running the dashboard can fix (bad URL, unknown viewer...).

    Its message is one line, meant to be shown as is.
    """


#: How much of a refused value a message quotes.
QUOTED_LENGTH = 80


def quoted(value: object) -> str:
    """A refused value as a message quotes it: its repr (escapes, no line break), cut
    after `QUOTED_LENGTH` characters (a URL may hold kilobytes)."""
    if isinstance(value, str) and len(value) > QUOTED_LENGTH:
        return f"{value[:QUOTED_LENGTH]!r}\u2026"
    text = repr(value)
    return text if len(text) <= QUOTED_LENGTH + 2 else f"{text[:QUOTED_LENGTH]}\u2026"
