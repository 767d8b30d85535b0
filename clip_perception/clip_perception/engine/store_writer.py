"""
Writes to a memory store that never block inference.

The inference thread hands frames to `StoreWriter.put`, which only appends to a
bounded queue (a full queue drops the oldest frame, counted). A writer thread
takes what has queued up and inserts it as one batch. When the store is down
or slow, an insert that fails loses its batch (counted as dropped, the error
kept for a throttled log line and /diagnostics), the store is closed and
opened again after `retry_sec`; while it is away, frames are dropped (counted)
as they come, not kept to be written late; detection never waits for any of it.
"""
from collections import deque
from dataclasses import dataclass
import threading
import time

from clip_perception.engine.memory import StoredFrame
from clip_perception.engine.model_loading import first_line


@dataclass
class WriterState:
    """What /diagnostics reports of the writer."""

    connected: bool = False
    written_frames: int = 0
    written_rows: int = 0
    dropped_frames: int = 0  # lost: queue full, or their insert failed
    failures: int = 0  # inserts or openings that failed
    last_error: str = ''


class StoreWriter:
    """
    A thread that batches frames into a store opened by `open_store()`.

    open_store: () -> a store with add(frames, run) and close() (MilvusStore);
    it may raise (the store is away): the writer tries again every `retry_sec`.
    max_queue: frames waiting at most; max_batch: frames per insert.
    """

    def __init__(self, open_store, max_queue: int = 256, max_batch: int = 64,
                 retry_sec: float = 5.0, run: str = ''):
        self._open_store, self.max_batch, self.retry_sec, self.run = \
            open_store, max_batch, retry_sec, run
        self._queue: deque[tuple[StoredFrame, int]] = deque()
        self.max_queue = max_queue
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self.state = WriterState()
        self._store = None
        self._busy = False  # the thread holds a batch taken from the queue
        self._thread = threading.Thread(target=self._loop, name='memory_store_writer',
                                        daemon=True)
        self._thread.start()

    @property
    def _away(self) -> bool:
        """Say whether the last opening or insert failed (False before the first try)."""
        return self.state.failures > 0 and not self.state.connected

    def put(self, frame: StoredFrame, clock_ns: int) -> None:
        """Queue a frame (never blocks; a full queue drops its oldest frame)."""
        with self._wake:
            if self._away:  # dropped now, as the frames queued when it went away were
                self.state.dropped_frames += 1
                return
            if len(self._queue) >= self.max_queue:
                self._queue.popleft()
                self.state.dropped_frames += 1
            self._queue.append((frame, clock_ns))
            self._wake.notify()

    @property
    def queued(self) -> int:
        with self._wake:
            return len(self._queue)

    def store(self):
        """Return the open store, for searches (None while it is away)."""
        return self._store

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until the queue is empty (written or dropped); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._wake:
            return self._wake.wait_for(lambda: not self._queue and not self._busy,
                                       timeout=max(0.0, deadline - time.monotonic()))

    def close(self, timeout: float = 5.0) -> None:
        """Write what is queued (within `timeout`), stop the thread, close the store."""
        self.flush(timeout)
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        self._thread.join(timeout)
        if self._store is not None:
            self._store.close()
            self._store = None

    # --- the thread ---------------------------------------------------------------------
    def _loop(self) -> None:
        next_try = 0.0
        while not self._stop.is_set():
            if self._store is None:
                if time.monotonic() < next_try:
                    self._stop.wait(min(0.2, next_try - time.monotonic()))
                    continue
                if not self._connect():
                    next_try = time.monotonic() + self.retry_sec
                    continue
            with self._wake:
                self._wake.wait_for(lambda: self._queue or self._stop.is_set(), timeout=0.5)
                batch = [self._queue.popleft()
                         for _ in range(min(self.max_batch, len(self._queue)))]
                self._busy = bool(batch)
            if batch:
                self._write(batch)
                next_try = time.monotonic() + self.retry_sec
            with self._wake:
                self._busy = False
                self._wake.notify_all()

    def _connect(self) -> bool:
        try:
            self._store = self._open_store()
        except Exception as error:  # the store is away: try again later
            self._failed(error)
            return False
        self.state.connected = True
        return True

    def _write(self, batch) -> None:
        try:
            rows = self._store.add(batch, run=self.run)
        except Exception as error:  # the store went away mid-stream: reopen it later
            self.state.dropped_frames += len(batch)
            self._failed(error)
            store, self._store = self._store, None
            try:
                store.close()
            except Exception:  # closing what is already gone
                pass
            return
        self.state.written_frames += len(batch)
        self.state.written_rows += rows

    def _failed(self, error: Exception) -> None:
        self.state.connected = False
        self.state.failures += 1
        self.state.last_error = f'{type(error).__name__}: {first_line(error)}'
        with self._wake:  # frames queued while away are dropped, not written late
            self.state.dropped_frames += len(self._queue)
            self._queue.clear()
            self._wake.notify_all()
