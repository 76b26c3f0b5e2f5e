"""Errors the CLI reports as one message (exit code 2) instead of a traceback."""


class UserError(Exception):
    """Bad input from the user (a file, a key, a value); the message names it."""


class EvaluationError(UserError):
    """Genomes could not be evaluated (their workers kept dying; the message names them), or
    every evaluation of a generation failed for one reason (the message gives it).

    The run stops before its generation's checkpoint, so the previous one stays valid.
    """
