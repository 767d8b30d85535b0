"""Rates and latency percentiles for diagnostics (no ROS imports)."""
import collections
import threading
import time

import numpy as np


class RateMeter:
    """Events per second over a sliding time window."""

    def __init__(self, window_sec: float = 5.0):
        self._window = window_sec
        self._times = collections.deque()
        self._lock = threading.Lock()

    def tick(self, now: float | None = None) -> None:
        with self._lock:
            self._times.append(time.monotonic() if now is None else now)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._times and self._times[0] < now - self._window:
                self._times.popleft()
            if len(self._times) < 2:
                return 0.0
            return (len(self._times) - 1) / max(self._times[-1] - self._times[0], 1e-9)


class LatencyWindow:
    """The last `size` latencies in seconds, reported as percentiles in ms."""

    def __init__(self, size: int = 200):
        self._values = collections.deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, seconds: float) -> None:
        with self._lock:
            self._values.append(seconds)

    def percentile_ms(self, q: float) -> float:
        with self._lock:
            if not self._values:
                return float('nan')
            return float(np.percentile(np.fromiter(self._values, float), q) * 1000.0)
