"""
The ROS-free engine: window grid, batched crops, scoring, thresholds, NMS.

Localization behaviour is tested with a deterministic colour encoder (see
colour_encoder.py), so these tests do not depend on what a CLIP model learned.
"""
from dataclasses import replace
import threading

from clip_perception.engine.boxes import Detection, pairwise_iou
from clip_perception.engine.detector import (DetectorSettings, InferenceCancelled,
                                             ZeroShotDetector)
from clip_perception.engine.preprocess import frame_to_device, Normalizer
from clip_perception.engine.prompts import ensemble, LabelEmbeddingCache, PromptError
from clip_perception.engine.sliding_windows.crops import crop_batch
from clip_perception.engine.sliding_windows.grid import window_count, window_grid, WindowSpec
from clip_perception.engine.sliding_windows.grouping import select_detections
from colour_encoder import colour_scene as scene
from colour_encoder import COLOUR_SETTINGS, ColourEncoder, COLOURS
import numpy as np
import pytest
import torch


def iou(box, reference):
    return float(pairwise_iou(np.array([box]), np.array([reference], float))[0, 0])


@pytest.fixture
def encoder():
    return ColourEncoder()


@pytest.fixture
def detector(encoder):
    return ZeroShotDetector(encoder, COLOUR_SETTINGS)


def test_red_square_on_grey_is_one_red_box(detector):
    square = (70, 40, 130, 100)
    result = detector.detect(scene(160, 240, [('red', *square)]))
    assert [d.label for d in result.detections] == ['red']
    found = result.detections[0]
    assert iou(found.box, square) >= 0.5, found
    assert 0.6 <= found.score <= 1.0
    assert result.classification[0][0] == 'red'


def test_plain_grey_frame_gives_no_detection(detector):
    result = detector.detect(scene(160, 240))
    assert result.detections == []
    assert len(result.classification) == 3  # every label still gets an image-level score


def test_classification_from_windows_says_which_labels_are_in_view(detector):
    # Each label is scored on its own (0..1) by the windows that frame it: two
    # labels in view both score high, unlike a softmax over the labels.
    frame = scene(160, 240, [('blue', 150, 60, 210, 120), ('red', 20, 20, 80, 80)])
    scores = dict(detector.detect(frame).classification)
    assert sorted(scores) == ['blue', 'green', 'red']
    assert scores['red'] > 0.6 and scores['blue'] > 0.6
    assert scores['green'] < 0.1
    empty = dict(detector.detect(scene(160, 240)).classification)
    assert max(empty.values()) < 0.1


def test_whole_image_classification_is_a_softmax_over_the_labels(encoder):
    detector = ZeroShotDetector(encoder, replace(COLOUR_SETTINGS, classification='whole_image'))
    result = detector.detect(scene(160, 240, [('green', 0, 0, 240, 100)]))
    assert result.classification[0][0] == 'green'
    assert sum(score for _, score in result.classification) == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(ValueError, match='classification'):
        replace(COLOUR_SETTINGS, classification='votes')


def test_two_colours_two_boxes_best_first(detector):
    squares = [('red', 20, 20, 80, 80), ('blue', 150, 60, 230, 140)]
    result = detector.detect(scene(160, 240, squares))
    found = {d.label: d for d in result.detections}
    assert set(found) == {'red', 'blue'}
    for name, *box in squares:
        assert iou(found[name].box, box) >= 0.5, found[name]
    assert [d.score for d in result.detections] == sorted(
        (d.score for d in result.detections), reverse=True)


def test_two_objects_of_one_label_stay_two_boxes(detector):
    squares = [('red', 10, 10, 70, 70), ('red', 170, 90, 230, 150)]
    result = detector.detect(scene(160, 240, squares))
    assert [d.label for d in result.detections] == ['red', 'red']
    for _, *box in squares:
        assert max(iou(d.box, box) for d in result.detections) >= 0.5


def test_background_prompt_rejects_empty_windows(encoder):
    # Without a background class a grey window is forced onto some label.
    forced = ZeroShotDetector(encoder, DetectorSettings(
        labels=('red', 'grey'), prompt_templates=('{}',), background_prompts=(),
        score_threshold=0.6))
    assert [d.label for d in forced.detect(scene(64, 64)).detections] == ['grey']
    rejecting = ZeroShotDetector(encoder, DetectorSettings(
        labels=('red',), prompt_templates=('{}',), background_prompts=('grey table',),
        score_threshold=0.0))
    assert rejecting.detect(scene(64, 64)).detections == []


def test_bgr_input_equals_rgb_input(detector):
    rgb = scene(120, 160, [('red', 10, 10, 60, 60), ('blue', 90, 50, 150, 110)])
    from_rgb = detector.detect(rgb)
    from_bgr = detector.detect(np.ascontiguousarray(rgb[:, :, ::-1]), bgr=True)
    assert from_bgr == from_rgb
    # Read as RGB, the BGR frame swaps red and blue.
    swapped = detector.detect(np.ascontiguousarray(rgb[:, :, ::-1]))
    assert {d.label for d in swapped.detections} == {'red', 'blue'}
    assert swapped.detections[0].label != from_rgb.detections[0].label or \
        swapped.detections[0].box != from_rgb.detections[0].box


def test_boxes_are_in_original_pixels_for_a_non_square_frame(detector):
    square = (300, 20, 380, 100)  # right part of a wide frame
    result = detector.detect(scene(120, 400, [('green', *square)]))
    assert [d.label for d in result.detections] == ['green']
    box = result.detections[0].box
    assert iou(box, square) >= 0.5, box
    assert 0 <= box[0] < box[2] <= 400 and 0 <= box[1] < box[3] <= 120


@pytest.mark.parametrize('height,width', [(1, 1), (3, 7), (9, 5), (31, 2)])
def test_tiny_and_odd_frames_still_work(detector, height, width):
    frame = scene(height, width)
    frame[:] = COLOURS['red']
    result = detector.detect(frame)
    assert result.num_windows >= 1
    assert [d.label for d in result.detections] == ['red']
    assert result.detections[0].box == (0.0, 0.0, float(width), float(height))


def test_several_frames_in_one_batch_equal_per_frame_results(encoder, detector):
    frames = [scene(160, 240, [('red', 70, 40, 130, 100)]), scene(90, 90),
              scene(200, 120, [('blue', 10, 100, 70, 160)])]
    detector.update(max_batch=10_000)
    one_by_one = [detector.detect(f) for f in frames]
    encoder.image_batches.clear()
    together = detector.detect_batch(frames)
    assert len(encoder.image_batches) == 1  # one encoder pass for all cameras
    assert encoder.image_batches[0] == sum(1 + r.num_windows for r in one_by_one)
    for a, b in zip(together, one_by_one):
        assert [d.label for d in a.detections] == [d.label for d in b.detections]
        for da, db in zip(a.detections, b.detections):
            assert da.score == pytest.approx(db.score, abs=1e-5)
            assert da.box == pytest.approx(db.box, abs=1e-4)


def test_given_windows_are_scored_like_the_same_windows_of_the_grid(detector):
    frame = scene(160, 240, [('red', 70, 40, 130, 100)])
    (whole,) = detector.score_windows([frame])
    picked = whole.windows[[3, 0, 7]]
    (given,) = detector.score_windows([frame], windows=[picked])
    assert np.array_equal(given.windows, picked)
    assert np.allclose(given.logits, whole.logits[[3, 0, 7]], atol=1e-4)
    assert np.allclose(given.whole_image, whole.whole_image, atol=1e-5)


def test_max_batch_chunks_the_encoder_pass(encoder):
    detector = ZeroShotDetector(encoder, DetectorSettings(
        labels=('red',), prompt_templates=('{}',), background_prompts=('grey',), max_batch=4))
    result = detector.detect(scene(120, 160))
    assert max(encoder.image_batches) <= 4
    assert sum(encoder.image_batches) == 1 + result.num_windows


def test_text_encoder_runs_once_for_repeated_frames_and_again_after_a_label_change(
        encoder, detector):
    assert len(encoder.text_calls) == 1  # at construction
    for _ in range(3):
        detector.detect(scene(64, 64))
    assert len(encoder.text_calls) == 1
    detector.update(labels=('red', 'yellow'))
    assert len(encoder.text_calls) == 2
    assert 'a yellow thing' in encoder.text_calls[-1]
    detector.detect(scene(64, 64))
    assert len(encoder.text_calls) == 2


@pytest.mark.parametrize('change,reason', [
    ({'labels': ()}, 'must not be empty'),
    ({'labels': ('red', 'Red')}, 'duplicate'),
    ({'labels': ('red', ' ')}, 'blank'),
    ({'prompt_templates': ('a photo',)}, 'exactly one {}'),
    ({'score_threshold': 1.5}, 'score_threshold'),
    ({'nms_iou': -0.1}, 'nms_iou'),
    ({'max_batch': 0}, 'max_batch'),
])
def test_invalid_updates_are_rejected_and_keep_the_old_settings(detector, change, reason):
    before = detector.settings
    with pytest.raises(ValueError, match=reason):
        detector.update(**change)
    assert detector.settings == before


def test_prompt_ensemble_is_the_renormalized_mean_of_normalized_templates():
    vectors = torch.nn.functional.normalize(torch.randn(6, 8), dim=-1)
    encoded = []

    def encode(texts):
        encoded.append(texts)
        return vectors[:len(texts)]

    cache = LabelEmbeddingCache(encode)
    classes = cache.get(('cat', 'dog'), ('a {}', 'the {}'), ('nothing', 'empty'))
    assert encoded == [['a cat', 'the cat', 'a dog', 'the dog', 'nothing', 'empty']]
    expected_cat = torch.nn.functional.normalize(vectors[0] + vectors[1], dim=0)
    assert torch.allclose(classes.matrix[0], expected_cat, atol=1e-6)
    assert torch.allclose(classes.matrix[2:], vectors[4:6])
    assert classes.num_labels == 2
    assert torch.allclose(ensemble(vectors[:4].reshape(2, 2, 8)), classes.matrix[:2])
    with pytest.raises(PromptError, match='repeat labels'):
        cache.get(('nothing',), ('a {}',), ('nothing',))


def test_window_grid_covers_the_frame_and_stays_inside():
    spec = WindowSpec(scales=(0.5, 64), aspect_ratios=(1.0, 2.0), overlap=0.5)
    grid = window_grid(240, 320, spec)
    assert tuple(grid[0]) == (0, 0, 320, 240)  # the full frame comes first
    assert (grid[:, :2] >= 0).all() and (grid[:, 2] <= 320).all() and (grid[:, 3] <= 240).all()
    assert len(np.unique(grid, axis=0)) == len(grid)
    sizes = {tuple(s) for s in (grid[:, 2:] - grid[:, :2])}
    assert (120, 120) in sizes and (64, 64) in sizes and (170, 85) in sizes
    for size in sizes - {(320, 240)}:  # each size tiles the frame edge to edge
        same = grid[(grid[:, 2:] - grid[:, :2] == size).all(axis=1)]
        assert same[:, 0].min() == 0 and same[:, 2].max() == 320
        assert same[:, 1].min() == 0 and same[:, 3].max() == 240


def test_crop_batch_matches_resizing_each_crop():
    rng = np.random.default_rng(1)
    import cv2
    frame = cv2.GaussianBlur(rng.integers(0, 256, (90, 130, 3), dtype=np.uint8), (0, 0), 2)
    device = torch.device('cpu')
    normalize = Normalizer((0.5,) * 3, (0.25,) * 3, device)
    windows = window_grid(90, 130, WindowSpec(scales=(0.5,), overlap=0.3))
    tensor = frame_to_device(frame, device)
    batch = crop_batch(tensor, windows, 32, normalize)
    for row, (x0, y0, x1, y1) in zip(batch, windows):
        single = torch.nn.functional.interpolate(
            tensor[None, :, y0:y1, x0:x1].float(), size=(32, 32), mode='bicubic',
            antialias=True).clamp(0, 255).round()
        # Same pixels up to border taps and sub-pixel rounding: within 6 grey levels
        # on average, where crops of different windows differ by ~10x that.
        assert (normalize(single)[0] - row).abs().mean() * 0.25 * 255 < 6


def test_select_detections_nms_keeps_the_best_placed_window_per_label():
    windows = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [50, 50, 60, 60], [0, 0, 10, 10]])
    # columns: label a, label b, background
    logits = np.array([[5.0, 0, 0], [6.0, 0, 0], [0, 4.0, 0], [0, 0, 9.0]])
    found = select_detections(windows, logits, ('a', 'b'), 0.5, 0.3, 10,
                              refinement='none')
    assert sorted((d.label, d.box) for d in found) == [('a', (1.0, 1.0, 11.0, 11.0)),
                                                       ('b', (50.0, 50.0, 60.0, 60.0))]
    merged = {d.label: d for d in select_detections(windows, logits, ('a', 'b'), 0.5, 0.3, 10)}
    assert 0.0 < merged['a'].box[0] < 1.0  # weighted between the two 'a' windows
    assert Detection('a', 1.0, (0, 0, 4, 2)).center_size == (2.0, 1.0, 4.0, 2.0)


def test_select_detections_scores_an_object_by_the_windows_framing_it():
    # Two 'a' proposals, equally sure in their best window: the first is framed by
    # shifted windows that agree, the second by windows that call it background.
    windows = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [0, 1, 10, 11],
                        [50, 50, 60, 60], [51, 50, 61, 60], [50, 51, 60, 61],
                        [90, 90, 95, 95]])
    logits = np.array([[8.0, 0], [6.0, 0], [6.0, 0], [8.0, 0], [0, 6.0], [0, 6.0],
                       [0, 6.0]])  # columns: label a, background
    found = select_detections(windows, logits, ('a',), 0.9, 0.9, 10, refinement='none')
    assert [d.box for d in found] == [(0.0, 0.0, 10.0, 10.0), (50.0, 50.0, 60.0, 60.0)]
    agreed = (1 / (1 + np.exp(-8.0)) + 2 / (1 + np.exp(-6.0))) / 3
    disputed = (1 / (1 + np.exp(-8.0)) + 2 / (1 + np.exp(6.0))) / 3
    assert [d.score for d in found] == pytest.approx([agreed, disputed])
    assert len(select_detections(windows, logits, ('a', 'b'), 0.5, 0.3, 1)) == 1


def test_intersect_refinement_recovers_the_object_inside_its_windows():
    obj = (40, 30, 70, 50)
    # windows of several sizes and offsets, each holding the whole object
    windows = np.array([[30, 20, 80, 70], [40, 10, 90, 60], [20, 30, 75, 55], [35, 25, 72, 80],
                        [38, 28, 100, 52], [10, 0, 71, 51]])
    logits = np.array([[8.0, 0.0]] * len(windows)) + np.arange(len(windows))[:, None] * [0.1, 0]
    found = select_detections(windows, logits, ('tool',), 0.5, 0.3, 5,
                              refinement='intersect')
    assert len(found) == 1
    assert iou(found[0].box, obj) >= 0.7, found[0].box
    best_window = select_detections(windows, logits, ('tool',), 0.5, 0.3, 5,
                                    refinement='none')[0].box
    assert iou(found[0].box, obj) > iou(best_window, obj)


def test_cuda_out_of_memory_halves_the_batch_and_the_frame_still_goes_through(encoder):
    detector = ZeroShotDetector(encoder, DetectorSettings(
        labels=('red',), prompt_templates=('{}',), background_prompts=('grey',), max_batch=64))
    encode = encoder.encode_images

    def limited(pixels):
        if len(pixels) > 8:
            raise torch.cuda.OutOfMemoryError('CUDA out of memory (simulated)')
        return encode(pixels)

    encoder.encode_images = limited
    result = detector.detect(scene(120, 160, [('red', 40, 30, 100, 90)]))
    assert detector.batch_size == 8
    assert [d.label for d in result.detections] == ['red']


@pytest.mark.parametrize('height,width', [(240, 320), (1, 1), (2, 10000), (1080, 1920)])
def test_window_count_is_the_grid_size_without_building_it(height, width):
    for spec in (WindowSpec(), WindowSpec(scales=(0.75, 0.55, 0.4, 0.28),
                                          aspect_ratios=(1.0, 2.0, 0.5), overlap=0.6),
                 WindowSpec(scales=(0.5, 64), aspect_ratios=(1.0, 2.0))):
        # an upper bound that only duplicates (windows clamped to the frame) can undercut
        assert window_count(height, width, spec) >= len(window_grid(height, width, spec))
    assert window_count(240, 320, WindowSpec()) == len(window_grid(240, 320, WindowSpec()))


def test_a_frame_asking_for_more_than_max_windows_is_refused_before_any_work(encoder):
    detector = ZeroShotDetector(encoder, replace(COLOUR_SETTINGS, max_windows=100))
    with pytest.raises(ValueError, match=r'a 10000×2 frame would need \d+ windows'):
        detector.detect(scene(2, 10000))
    assert encoder.image_batches == []  # refused before the encoder saw anything
    assert detector.detect(scene(120, 160)).num_windows <= 100


def test_cancel_stops_an_encoder_pass_at_its_next_chunk(encoder):
    detector = ZeroShotDetector(encoder, replace(COLOUR_SETTINGS, max_batch=4))
    encode = encoder.encode_images

    def cancel_after_first_chunk(pixels):
        detector.cancel()
        return encode(pixels)

    encoder.encode_images = cancel_after_first_chunk
    with pytest.raises(InferenceCancelled):
        detector.detect(scene(120, 160))
    assert len(encoder.image_batches) == 1


def test_uncertain_detections_leave_the_confident_ones_as_they_are():
    """
    With uncertain_threshold the confident set is the one without it (tracking's input).

    Selecting at the lower threshold alone merges more windows: the red square's
    score and box change there (0.87 -> 0.82), which is why the two are selected apart.
    """
    encoder = ColourEncoder(logit_scale=3.0)  # soft scores: the blue square is uncertain
    frame = scene(squares=[('red', 10, 10, 70, 70), ('blue', 110, 70, 150, 110)])
    plain = ZeroShotDetector(encoder, COLOUR_SETTINGS).detect(frame)
    both = ZeroShotDetector(encoder, replace(COLOUR_SETTINGS, uncertain_threshold=0.2))
    result = both.detect(frame)
    assert result.detections == plain.detections and plain.uncertain == []
    assert [d.label for d in result.detections] == ['red']
    assert [d.label for d in result.uncertain] == ['blue']
    assert 0.2 <= result.uncertain[0].score < COLOUR_SETTINGS.score_threshold
    lowered = ZeroShotDetector(encoder, replace(COLOUR_SETTINGS, score_threshold=0.2))
    assert lowered.detect(frame).detections[0] != plain.detections[0]
    with pytest.raises(ValueError, match='uncertain_threshold'):
        replace(COLOUR_SETTINGS, uncertain_threshold=0.9)


def test_a_query_stops_when_its_caller_gives_up(encoder):
    detector = ZeroShotDetector(encoder, replace(COLOUR_SETTINGS, max_batch=4))
    frame = scene(squares=[('red', 40, 30, 100, 90)])
    gave_up = threading.Event()
    encode = encoder.encode_images

    def encode_then_give_up(pixels):
        gave_up.set()  # the caller's wait expires during the first chunk
        return encode(pixels)
    encoder.encode_images = encode_then_give_up
    with pytest.raises(InferenceCancelled):
        detector.detect_query([frame], cancelled=gave_up, labels=('green',))
    assert len(encoder.image_batches) == 1  # stopped at the next chunk
    encoder.encode_images = encode
    assert detector.detect(frame).detections  # the detector itself is not cancelled
