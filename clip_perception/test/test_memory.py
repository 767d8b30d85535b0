"""The memory of frames and its search, the vector index, on-demand detection (engine)."""
from dataclasses import replace

from clip_perception.engine.detector import ZeroShotDetector
from clip_perception.engine.memory import (FrameMemory, MemorySettings, query_label, Regions,
                                           StoredFrame)
from clip_perception.engine.prompts import LabelEmbeddingCache, PromptError
from clip_perception.engine.vector_index import choose_kind, FAISS_FROM, VectorIndex
from colour_encoder import colour_scene, COLOUR_SETTINGS, ColourEncoder
import numpy as np
import pytest
import torch

SEC = 10**9


def regions_of(detector, frame) -> Regions:
    return detector.detect_batch([frame], keep_regions=True)[0].regions


def stored(detector, stamp_sec, squares, camera='/image'):
    frame = colour_scene(squares=squares)
    return StoredFrame(camera, stamp_sec * SEC, 'cam', regions_of(detector, frame))


@pytest.fixture
def detector():
    return ZeroShotDetector(ColourEncoder(), COLOUR_SETTINGS)


def test_regions_are_the_windows_with_their_embeddings_only_when_asked(detector):
    frame = colour_scene(squares=[('red', 40, 30, 100, 90)])
    plain, kept = detector.detect_batch([frame, frame], keep_regions=[False, True])
    assert plain.regions is None
    assert kept.regions.boxes.shape == (kept.num_windows, 4)
    assert kept.regions.embeddings.shape[0] == len(kept.regions.boxes)
    assert torch.allclose(kept.regions.embeddings.norm(dim=1), torch.ones(1))
    dense = ZeroShotDetector(ColourEncoder(), replace(COLOUR_SETTINGS, localizer='dense'))
    patches = dense.detect_batch([frame], keep_regions=True)[0].regions
    assert len(patches.boxes) == patches.embeddings.shape[0] > 1
    assert patches.boxes[:, 2].max() == 160 and patches.boxes[:, 3].max() == 120


def test_the_memory_ranks_the_frame_showing_the_query_first_with_its_box(detector):
    memory = FrameMemory(MemorySettings(period_sec=0.0))
    memory.add(stored(detector, 1, []))
    memory.add(stored(detector, 2, [('red', 40, 30, 100, 90)]))
    memory.add(stored(detector, 3, [('blue', 60, 40, 120, 100)]))
    memory.add(stored(detector, 4, []))
    classes = detector.query_embeddings('red')
    matches = memory.search(classes.matrix, 100.0, top_k=3)
    assert [m.frame.stamp_ns for m in matches][0] == 2 * SEC
    assert len({m.frame.stamp_ns for m in matches}) == 3  # one match per frame
    x0, y0, x1, y1 = matches[0].box
    assert x0 < 70 < x1 and y0 < 60 < y1  # on the red square
    assert matches[0].score > 0.9 > matches[1].score
    blue = memory.search(detector.query_embeddings('blue').matrix, 100.0, 1)
    assert blue[0].frame.stamp_ns == 3 * SEC
    # a time range leaves the red frame out
    later = memory.search(classes.matrix, 100.0, 3, start_ns=3 * SEC)
    assert {m.frame.stamp_ns for m in later} == {3 * SEC, 4 * SEC}
    assert memory.search(classes.matrix, 100.0, 3, start_ns=5 * SEC) == []


def test_the_memory_stores_once_per_period_and_forgets_the_oldest(detector):
    memory = FrameMemory(MemorySettings(max_frames=3, period_sec=1.0, max_age_sec=0.0))
    frame = stored(detector, 10, [], camera='/a')
    assert memory.due('/a', 10 * SEC)
    memory.add(frame)
    assert not memory.due('/a', 10 * SEC + SEC // 2)  # within the period
    assert memory.due('/b', 10 * SEC + SEC // 2)  # another camera has its own
    assert memory.due('/a', 11 * SEC)
    assert memory.due('/a', 5 * SEC)  # stamps went back: a bag started over
    for second in (11, 12, 13):
        memory.add(replace(frame, stamp_ns=second * SEC))
    assert [f.stamp_ns for f in memory.frames] == [11 * SEC, 12 * SEC, 13 * SEC]
    assert memory.frames[0].regions.embeddings.dtype == torch.float16
    aged = FrameMemory(MemorySettings(max_frames=100, period_sec=0.0, max_age_sec=2.0))
    for second in (1, 2, 3, 4):
        aged.add(replace(frame, stamp_ns=second * SEC))
    assert [f.stamp_ns // SEC for f in aged.frames] == [2, 3, 4]
    with pytest.raises(ValueError, match='max_frames'):
        MemorySettings(max_frames=0)


def test_query_label_drops_a_leading_article():
    assert query_label('a hammer') == query_label('the hammer') == query_label('hammer')
    assert query_label('  an  adjustable wrench ') == 'adjustable wrench'
    assert query_label('a') == 'a'


def test_detect_query_uses_its_labels_once_and_leaves_the_streaming_settings(detector):
    frame = colour_scene(squares=[('green', 40, 30, 100, 90)])
    streaming = replace(COLOUR_SETTINGS, labels=('red',))
    detector.update(labels=('red',))
    (result,) = detector.detect_query([frame], labels=('green', 'blue'), score_threshold=0.5)
    assert [d.label for d in result.detections] == ['green']
    assert {label for label, _ in result.classification} == {'green', 'blue'}
    assert detector.settings == streaming
    assert detector.detect(frame).detections == []  # streaming: red only
    calls = len(detector.encoder.text_calls)
    detector.detect_query([frame], labels=('green', 'blue'))
    assert len(detector.encoder.text_calls) == calls  # the query's prompts are cached
    with pytest.raises(PromptError, match='duplicate labels'):
        detector.detect_query([frame], labels=('green', 'Green'))
    assert detector.settings == streaming


def test_the_text_cache_keeps_the_most_recently_used_prompt_sets():
    encoded = []

    def encode(texts):
        encoded.append(list(texts))
        return torch.nn.functional.normalize(torch.randn(len(texts), 4), dim=-1)

    cache = LabelEmbeddingCache(encode, capacity=2)
    cache.get(['a'], ['{}'], [])
    cache.get(['b'], ['{}'], [])
    cache.get(['a'], ['{}'], [])  # a is the most recent now
    cache.get(['c'], ['{}'], [])  # b goes
    assert len(encoded) == 3
    cache.get(['a'], ['{}'], [])
    assert len(encoded) == 3
    cache.get(['b'], ['{}'], [])
    assert len(encoded) == 4


def test_vector_index_kinds_agree_with_brute_force():
    rng = np.random.default_rng(1)
    vectors = rng.standard_normal((3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    queries = vectors[:20] + 0.05 * rng.standard_normal((20, 32)).astype(np.float32)
    exact_scores, exact = VectorIndex(vectors, 'exact').search(queries, 5)
    assert (exact[:, 0] == np.arange(20)).all()
    flat_scores, flat = VectorIndex(vectors, 'flat').search(queries, 5)
    assert (flat == exact).all() and np.allclose(flat_scores, exact_scores, atol=1e-5)
    for kind in ('ivf', 'hnsw'):
        _, found = VectorIndex(vectors, kind).search(queries, 5)
        assert (found[:, 0] == np.arange(20)).mean() >= 0.9, kind
    assert choose_kind(FAISS_FROM - 1) == 'exact' and choose_kind(FAISS_FROM) == 'ivf'
    with pytest.raises(ValueError, match='index kind'):
        VectorIndex(vectors, 'lsh')


def test_the_memory_ages_on_its_own_clock_not_on_the_stamps(detector):
    """Stamps years ahead or zero neither evict the other frames nor stop storing."""
    memory = FrameMemory(MemorySettings(max_frames=100, period_sec=1.0, max_age_sec=10.0))
    clock = 1_000 * SEC
    for stamp in (1_800_000_000, 1_960_000_000, 0, 0):  # normal, 5 years ahead, zero, zero
        assert memory.due('/image', clock)
        memory.add(stored(detector, stamp, []), clock)
        clock += SEC
    assert len(memory) == 4
    memory.forget(clock + 7 * SEC)  # at 1011 s the first, stored at 1000 s, is too old
    assert [f.stamp_ns // SEC for f in memory.frames] == [1_960_000_000, 0, 0]


def test_the_memory_keeps_to_its_byte_budget(detector):
    one = stored(detector, 1, [])
    size = one.regions.embeddings.numel() * 2 + one.regions.boxes.nbytes
    memory = FrameMemory(MemorySettings(max_frames=1000, period_sec=0.0,
                                        max_bytes=3 * size + size // 2))
    for second in range(10):
        memory.add(replace(one, stamp_ns=second * SEC))
    assert [f.stamp_ns // SEC for f in memory.frames] == [7, 8, 9]
    assert memory.bytes == 3 * size
    memory.clear()
    assert memory.bytes == 0 and len(memory) == 0
