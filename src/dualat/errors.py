"""The one exception type a user mistake raises; the CLI prints it as a single line."""


class DualatError(Exception):
    """A problem the user can fix. The message says what is wrong and how to fix it."""
