"""The root of every failure the project raises with a message written for its user."""

from __future__ import annotations


class MlopsError(Exception):
    """An expected failure: its message says what was expected, what was found, what to do.

    The CLI prints it as one line without a traceback. This module imports nothing, so that
    catching it never imports a library (importing Prefect at that point would create its home
    folder, which may be the very folder that failed).
    """
