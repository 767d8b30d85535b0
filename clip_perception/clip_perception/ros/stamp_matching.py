"""
Matching messages of other topics to a colour frame by stamp (approximate time).

message_filters is not on PyPI; this is the part of its ApproximateTimeSynchronizer
the node needs: each depth and camera_info topic keeps its newest messages, and
a colour frame takes the one stamped closest to its own, within a slop. Needs
no ROS import: messages are stored with the stamp the caller reads.

A frame claims its match when it arrives (StampBuffer.claim): the claim takes
the closest message then and every closer one that arrives later, until the
frame is done. So a frame that waits for inference keeps its depth image even
when the buffer has long moved on (depth at 100 Hz, inference at 2 Hz), and a
depth image that arrives just after its frame still joins it.
"""
from collections import deque
import threading

NS_PER_SEC = 1_000_000_000


class NoMatch(LookupError):
    """No message close enough in time; the text says what there was, `kind` in a word."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind  # 'none' (nothing received yet) or 'stamp' (too far off in time)


# Open claims kept per topic; past this the oldest is dropped (frames are released, so
# only a leak would reach it).
MAX_CLAIMS = 64


class Claim:
    """A frame's hold on the message of one topic stamped closest to it (StampBuffer.claim)."""

    def __init__(self, topic: str, stamp_ns: int):
        self.topic = topic
        self.stamp_ns = stamp_ns
        self._best: tuple[int, object] | None = None

    def offer(self, stamp_ns: int, msg) -> None:
        if self._best is None or abs(stamp_ns - self.stamp_ns) < abs(self._best[0] -
                                                                     self.stamp_ns):
            self._best = (stamp_ns, msg)

    def match(self, slop_ns: int):
        """Return the closest message offered, at most `slop_ns` away; NoMatch says why not."""
        return _within(self._best, self.stamp_ns, slop_ns, self.topic)


class StampBuffer:
    """The newest `size` messages of one topic, by stamp, and the frames' claims; thread-safe."""

    def __init__(self, topic: str, size: int = 10):
        self.topic = topic
        self._items: deque[tuple[int, object]] = deque(maxlen=size)
        self._claims: dict[int, Claim] = {}  # by id, oldest first
        self._lock = threading.Lock()

    def add(self, stamp_ns: int, msg) -> None:
        with self._lock:
            self._items.append((stamp_ns, msg))
            for claim in self._claims.values():
                claim.offer(stamp_ns, msg)

    def claim(self, stamp_ns: int) -> Claim:
        """Hold the closest message to `stamp_ns` from now on, until `release`."""
        claim = Claim(self.topic, stamp_ns)
        with self._lock:
            for item in self._items:
                claim.offer(*item)
            self._claims[id(claim)] = claim
            while len(self._claims) > MAX_CLAIMS:
                del self._claims[next(iter(self._claims))]
        return claim

    def release(self, claim: Claim) -> None:
        with self._lock:
            self._claims.pop(id(claim), None)

    @property
    def open_claims(self) -> int:
        return len(self._claims)

    def closest(self, stamp_ns: int, slop_ns: int):
        """
        Return the message stamped closest to `stamp_ns`, at most `slop_ns` away.

        NoMatch says why not: nothing received yet, or how far the nearest lies.
        """
        with self._lock:
            items = list(self._items)
        best = min(items, key=lambda item: abs(item[0] - stamp_ns)) if items else None
        return _within(best, stamp_ns, slop_ns, self.topic)


def _within(best: tuple[int, object] | None, stamp_ns: int, slop_ns: int, topic: str):
    if best is None:
        raise NoMatch(f'nothing received on {topic} yet', 'none')
    stamp, msg = best
    if abs(stamp - stamp_ns) > slop_ns:
        raise NoMatch(f'the message on {topic} closest in time is '
                      f'{(stamp - stamp_ns) / NS_PER_SEC:+.3f} s from the frame, more '
                      f'than depth_slop {slop_ns / NS_PER_SEC:.3f} s', 'stamp')
    return msg
