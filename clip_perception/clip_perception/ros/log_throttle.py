"""
Log lines throttled per key, at any severity, safely under rclpy.

rclpy remembers the severity of each call site (file, function, line) and raises
ValueError when one site logs at another severity: a single `getattr(logger,
level)(text)` line used for warnings and errors alike raised inside the
inference thread and ended it. Each severity here has a call site of its own.
"""
import time

# A key is logged at most once per this many seconds.
LOG_EVERY_SEC = 5.0
# Keys remembered before the oldest are forgotten (a flood of distinct keys stays bounded).
MAX_KEYS = 1024


class ThrottledLog:
    """`info`, `warning` and `error` of a logger, each key at most once per `period_sec`."""

    def __init__(self, logger, period_sec: float = LOG_EVERY_SEC, clock=time.monotonic):
        self._logger = logger
        self._period = period_sec
        self._clock = clock
        self._last: dict[tuple, float] = {}
        self.suppressed: dict[tuple, int] = {}  # per key, lines left out since it was logged

    def _due(self, key: tuple) -> bool:
        now = self._clock()
        if now - self._last.get(key, now - self._period) < self._period:
            self.suppressed[key] = self.suppressed.get(key, 0) + 1
            return False
        if key not in self._last and len(self._last) >= MAX_KEYS:
            oldest = min(self._last, key=self._last.get)
            del self._last[oldest]
            self.suppressed.pop(oldest, None)
        self._last[key] = now
        return True

    def _text(self, key: tuple, text: str) -> str:
        left_out = self.suppressed.pop(key, 0)
        return f'{text} (and {left_out} more like it, not logged)' if left_out else text

    def info(self, key: tuple, text: str) -> None:
        if self._due(key):
            self._logger.info(self._text(key, text))

    def warning(self, key: tuple, text: str) -> None:
        if self._due(key):
            self._logger.warning(self._text(key, text))

    def error(self, key: tuple, text: str) -> None:
        if self._due(key):
            self._logger.error(self._text(key, text))
