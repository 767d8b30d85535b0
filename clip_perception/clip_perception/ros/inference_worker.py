"""
The inference thread: the model's only user.

Subscription callbacks park the newest message of each camera (`park`); the
thread takes every parked message at once and hands them to `process` (one
batch: several cameras share a pass), so it never works through a backlog, and
each replaced message is counted as dropped. Planner queries (`submit`) are
answered before the next frame. Whatever a frame or a query raises is the
caller's `process`/`answer` to count; the thread itself only ends on `stop`.

The watchdog: `stalled_sec` is how long frames have waited without the thread
finishing one.
"""
from dataclasses import dataclass, field
import threading
import time

from clip_perception.engine.detector import InferenceCancelled
from clip_perception.ros.depth_3d import DepthClaims
from clip_perception.ros.process_memory import release_free_memory

# A stop waits this long for the frame in progress; after that the frame is abandoned.
STOP_WAIT_SEC = 2.0
# The thread returns freed memory to the system this often (process_memory).
TRIM_EVERY_SEC = 10.0
# Requests waiting for the thread; one more is refused at once ("busy").
MAX_WAITING_QUERIES = 64


@dataclass
class ParkedImage:
    """The newest message of one camera, waiting for the inference thread."""

    topic: str
    msg: object  # sensor_msgs Image or CompressedImage
    received: float  # time.monotonic() when it arrived
    depth: DepthClaims | None = None  # its hold on the camera's depth and camera info

    def release(self) -> None:
        if self.depth is not None:
            self.depth.release()


class QueryError(Exception):
    """A service request that cannot be served; the message is the response's."""


@dataclass
class Query:
    """
    Work a service hands to the inference thread; `done` is set once it ran.

    `cancelled` is set when the caller stopped waiting: the work stops at its next
    encoder chunk (or is never started).
    """

    run: object  # (cancelled: threading.Event) -> the result, raises QueryError
    done: threading.Event = field(default_factory=threading.Event)
    cancelled: threading.Event = field(default_factory=threading.Event)
    result: object = None
    error: Exception | None = None

    def fail(self, error: Exception) -> None:
        self.error = error
        self.done.set()


class InferenceWorker:
    """
    Parked frames and waiting queries, and the thread that takes them.

    process(parked, stop): handle a batch of ParkedImage (raise anything: it is
    logged through `failed` and the loop goes on). answer(query, stop): run one
    Query (it sets the query's result or error). failed(stage, error): count and log.
    answered(): wake whoever waits for queries (called after failing them here).
    dropped(): count a parked message replaced by a newer one.
    """

    def __init__(self, process, answer, failed, answered, dropped):
        self._process, self._answer, self._failed = process, answer, failed
        self._answered, self._dropped = answered, dropped
        self._wake = threading.Condition()
        self._pending: dict[str, ParkedImage] = {}
        self._latest: dict[str, ParkedImage] = {}  # per camera, for ~/detect
        self.queries: list[Query] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        # Since when frames wait for the thread (None: none waits): the watchdog.
        self._waiting_since: float | None = None
        self._next_trim = 0.0

    # --- from the executor --------------------------------------------------------------
    def park(self, parked: ParkedImage) -> None:
        """Keep `parked` as its camera's newest message (a replaced one is dropped)."""
        with self._wake:
            replaced = self._pending.get(parked.topic)
            if replaced is not None:
                self._dropped()
                replaced.release()
            self._pending[parked.topic] = self._latest[parked.topic] = parked
            if self._waiting_since is None:
                self._waiting_since = parked.received
            self._wake.notify()

    def latest(self) -> dict[str, ParkedImage]:
        """Return the newest message of each camera (processed or not)."""
        with self._wake:
            return dict(self._latest)

    def submit(self, query: Query) -> None:
        """Queue `query` for the thread; QueryError when it is not running or too busy."""
        with self._wake:
            if not self.running:
                raise QueryError('the inference thread is not running')
            if len(self.queries) >= MAX_WAITING_QUERIES:
                raise QueryError(f'busy: {len(self.queries)} requests are waiting, try again')
            self.queries.append(query)
            self._wake.notify()

    def withdraw(self, query: Query) -> None:
        """Take back a query nobody waits for any more (a no-op once the thread took it)."""
        with self._wake:
            if query in self.queries:
                self.queries.remove(query)

    @property
    def running(self) -> bool:
        return self._thread is not None and not self._stop.is_set()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stalled_sec(self) -> float:
        """Seconds frames have waited without the thread finishing one (0: fine)."""
        since = self._waiting_since
        return 0.0 if since is None else time.monotonic() - since

    # --- start and stop ---------------------------------------------------------------
    def start(self) -> None:
        # A new event per thread: a thread left running by an earlier stop keeps its own,
        # set one, and does nothing more even after this start.
        self._stop = threading.Event()
        self._waiting_since = None
        self._thread = threading.Thread(target=self._loop, args=(self._stop,),
                                        name='clip_inference', daemon=True)
        self._thread.start()

    def stop(self, cancel, wait_sec: float = STOP_WAIT_SEC) -> bool:
        """
        Stop the thread (calling `cancel` to stop a pass in progress); True once it ended.

        After `wait_sec` the thread is left to finish alone (False); a thread left once
        is not waited for again.
        """
        asked_before = self._stop.is_set()
        self._stop.set()
        cancel()
        with self._wake:
            self._wake.notify_all()
        if self._thread is not None:
            self._thread.join(timeout=0.0 if asked_before else wait_sec)
            if self._thread.is_alive():
                return False
            self._thread = None
        return True

    def clear(self, reason: str) -> None:
        """Release every parked message and fail every waiting query with `reason`."""
        with self._wake:
            for parked in self._pending.values():
                parked.release()
            self._pending.clear()
            self._latest.clear()
            queries, self.queries = self.queries, []
        self._fail(queries, reason)

    def _fail(self, queries: list[Query], reason: str) -> None:
        for query in queries:
            query.fail(QueryError(reason))
        if queries:  # wake the executor to resume their coroutines
            self._answered()

    # --- the thread -------------------------------------------------------------------
    def _loop(self, stop: threading.Event) -> None:
        """
        Answer queries and process frames until `stop`; survive anything a frame raises.

        A dead thread would leave a node that looks healthy and never answers again.
        """
        queries = []
        try:
            while not stop.is_set():
                with self._wake:
                    self._wake.wait_for(lambda: self._pending or self.queries or stop.is_set(),
                                        timeout=0.5)
                    queries, self.queries = self.queries, []
                    parked = list(self._pending.values())
                    self._pending.clear()
                while queries:  # a planner waits for these: before the next frame
                    self._answer(queries.pop(0), stop)
                if parked and not stop.is_set():
                    self._handle(parked, stop)
                if time.monotonic() >= self._next_trim:  # freed memory back to the system
                    release_free_memory()
                    self._next_trim = time.monotonic() + TRIM_EVERY_SEC
        except InferenceCancelled:
            pass  # stopping
        finally:
            with self._wake:
                queries, self.queries = queries + self.queries, []
            self._fail(queries, 'the node is stopping')

    def _handle(self, parked: list[ParkedImage], stop: threading.Event) -> None:
        try:
            self._process(parked, stop)
        except InferenceCancelled:
            raise
        except Exception as error:  # counted, logged, next frame
            self._failed('processing', error)
        finally:
            for item in parked:
                item.release()
            with self._wake:  # the watchdog counts from the oldest frame still waiting
                self._waiting_since = min((p.received for p in self._pending.values()),
                                          default=None)
