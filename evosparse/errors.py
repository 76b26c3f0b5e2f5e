"""The one exception type for bad input: the CLI prints its message and exits with code 2."""


class UserError(Exception):
    """Bad input from the user (a file, a key, a value); the message names it."""
