"""
Matching messages of other topics to a colour frame by stamp (approximate time).

message_filters is not on PyPI; this is the part of its ApproximateTimeSynchronizer
the node needs: each depth and camera_info topic keeps its newest messages, and
a colour frame takes the one stamped closest to its own, within a slop. Needs
no ROS import: messages are stored with the stamp the caller reads.
"""
from collections import deque
import threading

NS_PER_SEC = 1_000_000_000


class NoMatch(LookupError):
    """No message close enough in time; the text says what there was, `kind` in a word."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind  # 'none' (nothing received yet) or 'stamp' (too far off in time)


class StampBuffer:
    """The newest `size` messages of one topic, by stamp; thread-safe."""

    def __init__(self, topic: str, size: int = 10):
        self.topic = topic
        self._items: deque[tuple[int, object]] = deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, stamp_ns: int, msg) -> None:
        with self._lock:
            self._items.append((stamp_ns, msg))

    def closest(self, stamp_ns: int, slop_ns: int):
        """
        Return the message stamped closest to `stamp_ns`, at most `slop_ns` away.

        NoMatch says why not: nothing received yet, or how far the nearest lies.
        """
        with self._lock:
            items = list(self._items)
        if not items:
            raise NoMatch(f'nothing received on {self.topic} yet', 'none')
        stamp, msg = min(items, key=lambda item: abs(item[0] - stamp_ns))
        if abs(stamp - stamp_ns) > slop_ns:
            raise NoMatch(f'the message on {self.topic} closest in time is '
                          f'{(stamp - stamp_ns) / NS_PER_SEC:+.3f} s from the frame, more '
                          f'than depth_slop {slop_ns / NS_PER_SEC:.3f} s', 'stamp')
        return msg
