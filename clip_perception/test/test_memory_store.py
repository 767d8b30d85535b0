"""The memory in Milvus Lite, for real: insert, filtered search, retention, restart, bad files."""
import time

from clip_perception.engine.memory import FrameMemory, MemorySettings, NS_PER_SEC, Regions
from clip_perception.engine.memory import StoredFrame
from clip_perception.engine.memory_store import (milvus_uri, MilvusStore, store_filter,
                                                 StoreError, StoreSettings)
from clip_perception.engine.store_writer import StoreWriter
import numpy as np
import pytest
import torch

pytest.importorskip('milvus_lite', reason='milvus-lite is not installed (pip install milvus-lite)')
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

DIM = 16


def unit(rng, count):
    vectors = torch.from_numpy(rng.normal(size=(count, DIM)).astype(np.float32))
    return torch.nn.functional.normalize(vectors, dim=-1)


def frame(rng, camera, stamp_sec, regions=3):
    boxes = np.array([[10.0 * i, 5.0, 10.0 * i + 8, 20.0] for i in range(regions)])
    return StoredFrame(camera, stamp_sec * NS_PER_SEC, 'camera_optical',
                       Regions(boxes, unit(rng, regions)))


def open_store(tmp_path, robot='robot_a', **settings):
    return MilvusStore(StoreSettings(f'milvus:{tmp_path / "memory.db"}', robot=robot,
                                     **settings), DIM)


def query_for(target: torch.Tensor, rng) -> torch.Tensor:
    """Make a query: `target`'s direction, then two background prompts."""
    return torch.cat([target[None], unit(rng, 2)])


def test_uris_name_an_embedded_file_or_a_server():
    path, embedded = milvus_uri('milvus:/tmp/robot.db')
    assert embedded and path.endswith('robot.db')
    assert milvus_uri('http://fleet:19530') == ('http://fleet:19530', False)
    for bad in ('milvus:/tmp/robot', 'fleet:19530', '/tmp/robot.db'):
        with pytest.raises(ValueError, match='memory_store must be|named \\*.db'):
            milvus_uri(bad)
    assert store_filter() == ''
    assert store_filter('r"1', '/cam', 5, 9) == ('robot == "r\\"1" and camera == "/cam" and '
                                                 'stamp_ns >= 5 and stamp_ns <= 9')


def test_a_search_ranks_like_the_in_process_memory_and_filters_by_robot_camera_time(tmp_path):
    rng = np.random.default_rng(0)
    frames = [frame(rng, '/cam_left', 100), frame(rng, '/cam_right', 101),
              frame(rng, '/cam_left', 102)]
    store = open_store(tmp_path)
    assert store.add([(f, i * NS_PER_SEC) for i, f in enumerate(frames)]) == 9
    other = open_store(tmp_path / 'b', robot='robot_b')  # another store file: apart
    assert other.count() == 0
    memory = FrameMemory(MemorySettings(period_sec=0))
    for stored in frames:
        memory.add(stored)
    query = query_for(frames[1].regions.embeddings[2], rng)
    found = store.search(query, 14.3, top_k=3)
    expected = memory.search(query, 14.3, top_k=3)
    assert [(m.frame.camera, m.frame.stamp_ns, m.box) for m in found] == \
        [(m.frame.camera, m.frame.stamp_ns, m.box) for m in expected]
    # the in-process memory keeps float16 embeddings, the store float32
    assert [m.score for m in found] == pytest.approx([m.score for m in expected], abs=1e-4)
    assert found[0].frame.robot == 'robot_a' and found[0].box == (20.0, 5.0, 28.0, 20.0)
    left = store.search(query, 14.3, top_k=3, camera='/cam_left')
    assert {m.frame.camera for m in left} == {'/cam_left'}
    late = store.search(query, 14.3, top_k=3, start_ns=101 * NS_PER_SEC + 1)
    assert [m.frame.stamp_ns for m in late] == [102 * NS_PER_SEC]
    assert store.search(query, 14.3, top_k=3, robot='robot_b') == []
    store.close()
    other.close()


def test_retention_deletes_the_oldest_rows_by_count_and_by_age(tmp_path):
    rng = np.random.default_rng(1)
    store = open_store(tmp_path, max_rows=7)
    for second in range(4):  # 3 regions each: the first two frames go over 7 rows
        store.add([(frame(rng, '/cam', second), second * NS_PER_SEC)])
    assert store.count() == 6
    aged = open_store(tmp_path / 'aged', max_age_sec=2.5)
    for second in range(5):
        aged.add([(frame(rng, '/cam', second), second * NS_PER_SEC)])
    # stored at 0..4 s; at 4 s what was stored before 1.5 s is gone
    assert aged.count() == 3 * 3
    assert aged.runs() == set()
    aged.add([(frame(rng, '/cam', 9), 5 * NS_PER_SEC)], run='bag_2026_12_07')
    assert aged.runs() == {'bag_2026_12_07'}  # what an indexer has written
    store.close()
    aged.close()


def test_a_restarted_store_remembers_and_keeps_its_bounds(tmp_path):
    rng = np.random.default_rng(2)
    first = open_store(tmp_path, max_rows=6)
    saved = frame(rng, '/cam', 7)
    first.add([(frame(rng, '/cam', 6), 6 * NS_PER_SEC), (saved, 7 * NS_PER_SEC)])
    first.close()
    again = open_store(tmp_path, max_rows=6)
    assert again.count() == 6
    (match,) = again.search(query_for(saved.regions.embeddings[0], rng), 14.3, top_k=1)
    assert match.frame.stamp_ns == 7 * NS_PER_SEC
    again.add([(frame(rng, '/cam', 8), 8 * NS_PER_SEC)])  # the oldest frame of before goes
    assert again.count() == 6
    assert {m.frame.stamp_ns for m in again.search(
        query_for(saved.regions.embeddings[0], rng), 14.3, top_k=5)} == {
        7 * NS_PER_SEC, 8 * NS_PER_SEC}
    again.close()
    with pytest.raises(StoreError, match='holds 16-d embeddings, this model makes 8-d'):
        MilvusStore(StoreSettings(f'milvus:{tmp_path / "memory.db"}'), 8)


def test_a_file_that_is_no_store_fails_with_one_clear_line(tmp_path):
    broken = tmp_path / 'broken.db'
    broken.write_bytes(b'\x00not a milvus store\xff' * 64)
    with pytest.raises(StoreError) as error:
        MilvusStore(StoreSettings(f'milvus:{broken}'), DIM)
    message = str(error.value)
    assert message.startswith(f'cannot open the memory store milvus:{broken}:')
    assert '\n' not in message
    with pytest.raises(StoreError, match='memory_store must be'):
        MilvusStore(StoreSettings('fleet:19530'), DIM)


def wait_for(condition, timeout=30.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, 'timed out'
        time.sleep(0.02)


def test_the_writer_batches_frames_into_the_store(tmp_path):
    rng = np.random.default_rng(3)
    writer = StoreWriter(lambda: open_store(tmp_path), max_batch=4, run='live')
    for second in range(10):
        writer.put(frame(rng, '/cam', second), second * NS_PER_SEC)
    assert writer.flush(30)
    assert (writer.state.written_frames, writer.state.written_rows) == (10, 30)
    assert writer.state.connected and writer.state.dropped_frames == 0
    assert writer.store().count() == 30 and writer.store().runs() == {'live'}
    writer.close()


def test_a_store_that_goes_away_costs_frames_not_detection_and_comes_back(tmp_path):
    rng = np.random.default_rng(4)
    writer = StoreWriter(lambda: open_store(tmp_path), retry_sec=0.2)
    writer.put(frame(rng, '/cam', 0), 0)
    assert writer.flush(30) and writer.state.written_frames == 1
    writer.store().client.close()  # the server went away under the writer
    writer.put(frame(rng, '/cam', 1), NS_PER_SEC)
    wait_for(lambda: writer.state.failures >= 1)
    assert writer.state.dropped_frames == 1 and writer.state.last_error
    wait_for(lambda: writer.state.connected)  # opened again after retry_sec
    writer.put(frame(rng, '/cam', 2), 2 * NS_PER_SEC)
    assert writer.flush(30) and writer.state.written_frames == 2
    assert writer.store().count() == 6
    writer.close()


def test_a_store_that_cannot_be_opened_drops_frames_and_put_never_waits(tmp_path):
    (tmp_path / 'a_file').write_text('not a folder')
    writer = StoreWriter(lambda: MilvusStore(StoreSettings(
        f'milvus:{tmp_path / "a_file" / "memory.db"}'), DIM), max_queue=8, retry_sec=0.1)
    rng = np.random.default_rng(5)
    started = time.monotonic()
    for second in range(50):
        writer.put(frame(rng, '/cam', second), second * NS_PER_SEC)
    assert time.monotonic() - started < 5  # generous: put only appends
    wait_for(lambda: writer.state.failures >= 2)
    assert not writer.state.connected and 'cannot open the memory store' in \
        writer.state.last_error
    assert writer.flush(10)
    assert writer.state.dropped_frames == 50 and writer.state.written_frames == 0
    writer.close()
