"""The exit codes of ``ckl``, shared by ``main`` and the commands (the README lists them).

A module of its own, with no imports, so that ``ckl.cli`` can use them without loading a
command's dependencies.
"""

__all__ = ["EXIT_ERROR", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
