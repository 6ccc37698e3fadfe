"""Errors a user can fix. The CLI prints them as one line, never a traceback."""


class PadaError(Exception):
    """Base for user-facing errors: the message says what is wrong, where, and how to fix it."""


class DataError(PadaError):
    """Bad or missing input data: the message names the file, line and field."""
