"""Expected failures of the plugin: shown as one clear line and a non-zero exit code, never as a traceback."""

from __future__ import annotations

EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_NOT_CONFIRMED = 3


class PluginError(Exception):
    """An error the user can act on; `message` says what went wrong and how to fix it."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
