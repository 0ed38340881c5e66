"""Routes the package's stdlib logging to the Fivetran SDK's logger for the length of a sync.

The lower layers log with `logging` so they never depend on the SDK; this is the one place that joins them.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any


class _SdkHandler(logging.Handler):
    def __init__(self, sdk_log: Any) -> None:
        super().__init__(logging.DEBUG)
        self._sdk_log = sdk_log

    def emit(self, record: logging.LogRecord) -> None:
        try:
            message = self.format(record)
            if record.levelno >= logging.ERROR:
                self._sdk_log.severe(message)
            elif record.levelno >= logging.WARNING:
                self._sdk_log.warning(message)
            elif record.levelno >= logging.INFO:
                self._sdk_log.info(message)
            else:
                self._sdk_log.fine(message)
        except Exception:  # noqa: BLE001 - a log line must never break a sync
            self.handleError(record)


@contextlib.contextmanager
def sdk_logging(sdk_log: Any, level: int = logging.INFO) -> Iterator[None]:
    """Forwards `dune_async.*` records at `level` and above to `sdk_log` while the block runs."""
    package_logger = logging.getLogger("dune_async")
    handler = _SdkHandler(sdk_log)
    previous_level, previous_propagate = package_logger.level, package_logger.propagate
    package_logger.addHandler(handler)
    package_logger.setLevel(level)
    package_logger.propagate = False  # the SDK prints it; the root logger would print it twice
    try:
        yield
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)
        package_logger.propagate = previous_propagate
