"""Exceptions the engine raises on purpose, so front ends can tell them from bugs."""


class InputError(ValueError):
    """The input cannot be denoised as given; the message is one line for the user."""


class Cancelled(RuntimeError):
    """The run was cancelled through its cancel event; nothing was written."""


class OutputError(RuntimeError):
    """The output could not be written (disk full, folder gone or locked); nothing
    partial was left behind.  The message is one line for the user."""
