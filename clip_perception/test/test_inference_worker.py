"""The inference thread on its own: parking, queries first, failures, stop, the watchdog."""
import threading
import time

from clip_perception.engine.detector import InferenceCancelled
from clip_perception.ros.inference_worker import (InferenceWorker, MAX_WAITING_QUERIES,
                                                  ParkedImage, Query, QueryError)
import pytest

pytestmark = pytest.mark.timeout(60)


class Recorder:
    """The worker's callbacks, recording what they were given."""

    def __init__(self):
        self.batches, self.answers, self.failures = [], [], []
        self.dropped = self.woken = 0
        self.gate = threading.Event()
        self.gate.set()
        self.raise_next = None
        self.handled = threading.Event()
        self.entered = threading.Event()  # the thread is inside a frame

    def process(self, parked, stop):
        self.entered.set()
        self.gate.wait(10)
        self.batches.append(sorted((p.topic, p.msg) for p in parked))
        error, self.raise_next = self.raise_next, None
        self.handled.set()
        if error is not None:
            raise error

    def answer(self, query, stop):
        self.answers.append(query)
        query.result = query.run(query.cancelled)
        query.done.set()

    def worker(self):
        return InferenceWorker(self.process, self.answer,
                               lambda stage, error: self.failures.append((stage, error)),
                               self.wake, self.drop)

    def wake(self):
        self.woken += 1

    def drop(self):
        self.dropped += 1


def held_in_a_frame(calls: Recorder) -> InferenceWorker:
    """Start a worker whose thread is held inside its first frame (until calls.gate)."""
    calls.gate.clear()
    worker = calls.worker()
    worker.start()
    worker.park(parked('/a', 1))
    assert calls.entered.wait(10)
    return worker


def wait_until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.01)


def parked(topic, msg, received=None):
    return ParkedImage(topic, msg, time.monotonic() if received is None else received)


def test_a_camera_keeps_only_its_newest_message_and_replaced_ones_count_as_dropped():
    calls = Recorder()
    worker = calls.worker()
    for index in range(3):
        worker.park(parked('/a', index))
    worker.park(parked('/b', 0))
    assert calls.dropped == 2
    assert {topic: p.msg for topic, p in worker.latest().items()} == {'/a': 2, '/b': 0}
    worker.start()
    wait_until(lambda: calls.batches)
    assert calls.batches == [[('/a', 2), ('/b', 0)]]  # one batch: the cameras share a pass
    assert worker.stop(lambda: None)


def test_queries_are_answered_before_the_next_frame():
    calls = Recorder()
    worker = calls.worker()
    calls.gate.clear()  # the thread is held inside its first frame
    worker.start()
    worker.park(parked('/a', 'first'))
    assert calls.entered.wait(10)
    # the query sees how many frames were handled when it ran
    query = Query(lambda cancelled: len(calls.batches))
    worker.park(parked('/a', 'second'))
    worker.submit(query)
    calls.gate.set()
    wait_until(lambda: len(calls.batches) == 2)
    assert query.done.is_set() and query.result == 1
    assert calls.batches[1] == [('/a', 'second')]
    assert worker.stop(lambda: None)


def test_a_frame_that_raises_is_reported_and_the_thread_goes_on():
    calls = Recorder()
    worker = calls.worker()
    worker.start()
    calls.raise_next = MemoryError('simulated')
    worker.park(parked('/a', 1))
    wait_until(lambda: calls.failures)
    assert calls.failures[0][0] == 'processing' and isinstance(calls.failures[0][1], MemoryError)
    worker.park(parked('/a', 2))
    wait_until(lambda: len(calls.batches) == 2)
    assert worker.alive()
    assert worker.stop(lambda: None) and not worker.alive()


def test_the_watchdog_counts_from_the_oldest_waiting_frame_and_resets_when_handled():
    calls = Recorder()
    worker = calls.worker()
    assert worker.stalled_sec() == 0.0
    calls.gate.clear()
    worker.start()
    worker.park(parked('/a', 1, received=time.monotonic() - 5))
    wait_until(lambda: worker.stalled_sec() >= 5)
    calls.gate.set()
    wait_until(lambda: calls.batches)
    wait_until(lambda: worker.stalled_sec() == 0.0)
    assert worker.stop(lambda: None)


def test_a_stop_cancels_the_pass_in_progress_and_fails_waiting_queries():
    calls = Recorder()
    cancelled = threading.Event()

    def process(parked, stop):
        calls.handled.set()
        cancelled.wait(10)
        raise InferenceCancelled('stopped')
    worker = InferenceWorker(process, calls.answer, lambda *a: None, calls.wake, calls.drop)
    worker.start()
    worker.park(parked('/a', 1))
    calls.handled.wait(10)
    waiting = Query(lambda cancelled: 'never')
    worker.submit(waiting)
    assert worker.stop(cancelled.set, wait_sec=5)
    assert waiting.done.is_set() and 'stopping' in str(waiting.error)
    assert calls.woken >= 1  # the executor is woken to resume the waiting coroutine
    with pytest.raises(QueryError, match='not running'):
        worker.submit(Query(lambda cancelled: None))


def test_a_frame_left_running_is_not_waited_for_twice():
    calls = Recorder()
    worker = held_in_a_frame(calls)
    started = time.monotonic()
    assert not worker.stop(lambda: None, wait_sec=0.2)  # the frame ignores the cancel
    assert not worker.stop(lambda: None, wait_sec=5)  # left once: not waited for again
    assert time.monotonic() - started < 3
    calls.gate.set()


def test_too_many_waiting_queries_are_refused_as_busy_and_clear_fails_the_rest():
    calls = Recorder()
    worker = held_in_a_frame(calls)
    queries = [Query(lambda cancelled: None) for _ in range(MAX_WAITING_QUERIES)]
    for query in queries:
        worker.submit(query)
    with pytest.raises(QueryError, match='busy'):
        worker.submit(Query(lambda cancelled: None))
    worker.withdraw(queries[0])
    worker.clear('the node was deactivated')
    assert all(q.done.is_set() and 'deactivated' in str(q.error) for q in queries[1:])
    assert not queries[0].done.is_set()  # withdrawn: nobody waits for it
    assert worker.latest() == {}
    calls.gate.set()
    assert worker.stop(lambda: None)
