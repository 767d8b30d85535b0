"""
Box regression, from the deltas to the fitting command.

Box regression: the deltas, the fit, the file in the model directory, the
detector moving its windows, and the fitting command on the real architecture.
"""
from dataclasses import replace
import json
import shutil

from clip_perception.engine.detector import DetectorSettings, ZeroShotDetector
from clip_perception.engine.model_loading import load_clip, ModelLoadError
from clip_perception.engine.sliding_windows.box_regression import (apply_deltas, box_deltas,
                                                                   BoxRegressor,
                                                                   load_box_regressor,
                                                                   REGRESSOR_FILE)
from clip_perception.tools.fit_boxes import fit_regressor
from clip_perception.tools.fit_boxes import main as fit_boxes_main
from clip_perception.tools.make_dataset import make_scenes
from colour_encoder import colour_scene as scene
from colour_encoder import COLOUR_SETTINGS, ColourEncoder
import numpy as np
import pytest
import torch


def test_deltas_move_a_window_onto_its_box_and_back():
    windows = np.array([[10.0, 20.0, 50.0, 60.0], [0.0, 0.0, 100.0, 40.0]])
    boxes = np.array([[15.0, 18.0, 45.0, 70.0], [30.0, 5.0, 60.0, 35.0]])
    deltas = box_deltas(windows, boxes)
    assert deltas[0, 0] == pytest.approx(0.0)  # same centre x
    assert deltas[1, 2] == pytest.approx(np.log(0.3))  # 30 of 100 px wide
    moved = apply_deltas(torch.from_numpy(windows), torch.from_numpy(deltas))
    assert np.allclose(moved.numpy(), boxes)


@pytest.fixture
def one_thread():
    """Tiny layers: on 2 cores a second torch thread costs more than it brings."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_the_fitted_regressor_learns_a_nonlinear_map_deterministically(one_thread):
    rng = np.random.default_rng(0)
    features = rng.normal(size=(2000, 6)).astype(np.float32)
    targets = np.stack([np.tanh(features[:, 0]), features[:, 1] ** 2 / 4,
                        0.3 * features[:, 2], 0.1 + 0 * features[:, 3]], axis=1)
    layers = fit_regressor(features, targets, hidden=32, steps=600, seed=3)
    assert all(torch.equal(layers[k], v) for k, v in
               fit_regressor(features, targets, hidden=32, steps=600, seed=3).items())
    regressor = BoxRegressor(layers, {})
    predicted = regressor.deltas(torch.from_numpy(features)).numpy()
    error = np.abs(predicted - targets).mean(axis=0)
    spread = np.abs(targets - targets.mean(axis=0)).mean(axis=0)
    assert (error[:3] < 0.25 * spread[:3]).all(), (error, spread)
    assert error[3] < 0.02  # a constant: the folded-in mean


def _shift_right(dim: int, dx: float = 0.25) -> BoxRegressor:
    """Build a regressor that moves every window right by dx of its width."""
    return BoxRegressor({'hidden.weight': torch.zeros(2, dim), 'hidden.bias': torch.zeros(2),
                         'out.weight': torch.zeros(4, 2),
                         'out.bias': torch.tensor([dx, 0.0, 0.0, 0.0])}, {'what': 'test'})


def test_regressed_boxes_stay_inside_the_frame():
    regressor = _shift_right(3, dx=0.5)
    windows = np.array([[0, 0, 40, 40], [80, 10, 100, 30]])
    boxes = regressor.regress(windows, torch.zeros(2, 3), height=60, width=100)
    assert np.allclose(boxes[0], [20, 0, 60, 40])
    assert np.allclose(boxes[1], [90, 10, 100, 30])  # clipped at the right edge
    (box,) = _shift_right(1, dx=9.0).regress(np.array([[0, 0, 10, 10]]), torch.zeros(1, 1),
                                             height=60, width=100)
    assert 0 <= box[0] < box[2] <= 100 and 0 <= box[1] < box[3] <= 60


def test_the_regressor_file_round_trips_and_must_fit_the_model(tmp_path):
    regressor = _shift_right(5)
    regressor.save(tmp_path)
    loaded = load_box_regressor(tmp_path, 5)
    assert loaded.layers.keys() == regressor.layers.keys() and loaded.info == {'what': 'test'}
    assert all(torch.equal(loaded.layers[k], v) for k, v in regressor.layers.items())
    assert load_box_regressor(tmp_path / 'nothing', 5) is None
    with pytest.raises(ValueError, match='5-d embeddings.*8 dimensions'):
        load_box_regressor(tmp_path, 8)
    from safetensors.torch import save_file
    save_file({'weight': torch.zeros(6, 4)}, str(tmp_path / REGRESSOR_FILE),
              metadata={'format': 'clip_perception.box_regressor/1'})
    with pytest.raises(ValueError, match='not a clip_perception box regressor'):
        load_box_regressor(tmp_path, 5)


def test_the_detector_moves_its_windows_by_the_regressor():
    encoder = ColourEncoder()
    image = scene(160, 240, [('red', 70, 40, 130, 100)])
    settings = replace(COLOUR_SETTINGS, box_refinement='none')
    plain = ZeroShotDetector(encoder, settings).detect(image).detections
    encoder.box_regressor = _shift_right(5)  # the colour encoder embeds in 5 dimensions
    moved = ZeroShotDetector(encoder, settings).detect(image).detections
    assert [d.label for d in moved] == [d.label for d in plain] and plain
    x0, y0, x1, y1 = plain[0].box
    expected = (x0 + 0.25 * (x1 - x0), y0, min(x1 + 0.25 * (x1 - x0), image.shape[1]), y1)
    assert moved[0].box == pytest.approx(expected)
    switched_off = ZeroShotDetector(encoder, replace(settings, box_regression=False)).detect(
        image).detections
    assert switched_off[0].box == plain[0].box


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_fit_boxes_writes_a_regressor_that_load_clip_uses(
        tiny_clip_dir, tmp_path, capsys, one_thread):
    model = tmp_path / 'model'
    shutil.copytree(tiny_clip_dir, model)
    make_scenes(tmp_path / 'scenes', count=12, blank=2, seed=8)
    params = tmp_path / 'params.yaml'
    params.write_text('/**:\n  ros__parameters:\n    window_scales: [0.6, 0.4]\n')
    fit_boxes_main(['--model', str(model), '--scenes', str(tmp_path / 'scenes'),
                    '--params', str(params), '--min-iou', '0.3', '--steps', '200'])
    info = json.loads(capsys.readouterr().out.splitlines()[0])
    assert info['windows_fitted'] > 20 and info['holdout_windows'] > 0
    assert 0.3 <= info['holdout_iou_before'] <= 1.0 and 0.0 < info['holdout_iou_after'] <= 1.0
    encoder = load_clip(str(model), device='cpu')
    assert encoder.box_regressor is not None
    assert encoder.box_regressor.info['min_iou'] == 0.3
    detector = ZeroShotDetector(encoder, DetectorSettings(score_threshold=0.0))
    scored = detector.score_windows([np.full((60, 80, 3), 128, np.uint8)])[0]
    assert not np.array_equal(scored.boxes, scored.windows)
    assert (scored.boxes[:, :2] < scored.boxes[:, 2:]).all()


def test_a_regressor_for_other_weights_is_a_clear_load_error(tiny_clip_dir, tmp_path):
    model = tmp_path / 'model'
    shutil.copytree(tiny_clip_dir, model)
    _shift_right(3).save(model)
    with pytest.raises(ModelLoadError, match='refit it'):
        load_clip(str(model), device='cpu')
