"""The heatmap localizers (dense, gradcam): maps, regions, boxes, and the real CLIP's maps."""
from dataclasses import replace

from clip_perception.engine.detector import ZeroShotDetector
from clip_perception.engine.heatmaps.maps import (gradcam_detections, map_input_size,
                                                  regions)
from clip_perception.engine.model_loading import load_clip
from colour_encoder import colour_scene, COLOUR_SETTINGS, ColourEncoder
import numpy as np
import pytest
import torch

DENSE = replace(COLOUR_SETTINGS, localizer='dense', map_size=96)


@pytest.fixture(scope='module')
def tiny_clip(tiny_clip_dir):
    return load_clip(str(tiny_clip_dir), 'cpu')


@pytest.mark.parametrize('frame, short_side, patch, expected', [
    ((240, 320), 96, 8, (96, 128)),
    ((320, 240), 96, 8, (128, 96)),
    ((480, 640), 224, 32, (224, 288)),  # 7 × 9.33 patches: the long side to 9
    ((100, 100), 4, 16, (16, 16)),  # at least one patch
])
def test_map_input_keeps_the_aspect_ratio_in_whole_patches(frame, short_side, patch, expected):
    assert map_input_size(*frame, short_side, patch) == expected


def test_regions_are_the_connected_parts_of_a_map_in_frame_pixels():
    heat = np.zeros((6, 8), np.float32)
    heat[1:3, 1:3] = 0.9  # patches (x 1..2, y 1..2)
    heat[4, 6] = 0.7
    found = sorted(regions(heat, 0.5, height=120, width=160, patch=4))
    assert len(found) == 2
    (first, mean, peak), (second, _, second_peak) = found
    # a 16×16 px patch grid on a 120×160 frame (scale 5 × 20/4 in both directions):
    # the region spans patch centres 1..2, its edges half-way to the neighbours
    assert first == pytest.approx((20.0, 20.0, 60.0, 60.0), abs=5.0)
    assert peak == pytest.approx(0.9) and 0.5 <= mean <= 0.9
    assert second_peak == pytest.approx(0.7, abs=0.01)


def test_gradcam_boxes_need_the_label_in_the_frame_and_are_scored_by_it():
    cams = np.zeros((2, 4, 4))
    cams[0, 1, 1] = cams[1, 2, 2] = 3.0
    found = gradcam_detections(cams, np.array([0.9, 0.2]), ('hammer', 'wrench'), 64, 64, 16,
                               score_threshold=0.5, heatmap_threshold=0.5, nms_iou=0.3,
                               max_detections=5)
    assert [(d.label, round(d.score, 3)) for d in found] == [('hammer', 0.9)]


def test_dense_finds_each_coloured_square_with_its_label_and_box():
    encoder = ColourEncoder()
    detector = ZeroShotDetector(encoder, DENSE)
    squares = {'red': (24, 16, 72, 64), 'blue': (96, 48, 144, 104)}
    result = detector.detect(colour_scene(squares=[(c, *b) for c, b in squares.items()]))
    assert sorted(d.label for d in result.detections) == ['blue', 'red']
    for found in result.detections:
        # 96×128 input of a 120×160 frame: a patch is 10 frame pixels, the edge's accuracy
        assert found.box == pytest.approx(squares[found.label], abs=10.0), found
        assert COLOUR_SETTINGS.score_threshold <= found.score <= 1.0
    assert result.heatmaps.shape == (3, 12, 16)  # 96×128 input, 8 px patches
    assert result.heatmap_labels == ('red', 'green', 'blue')
    assert ((result.heatmaps >= 0) & (result.heatmaps <= 1)).all()
    assert [label for label, _ in result.classification][:2] in (['red', 'blue'],
                                                                 ['blue', 'red'])
    empty = detector.detect(colour_scene())
    assert empty.detections == []


def test_dense_follows_a_label_change_and_batches_frames_of_one_input_size():
    encoder = ColourEncoder()
    detector = ZeroShotDetector(encoder, DENSE)
    detector.update(labels=('green', 'yellow'))
    frames = [colour_scene(squares=[('green', 10, 10, 60, 60)]),
              colour_scene(squares=[('yellow', 80, 40, 140, 100)]),
              colour_scene(height=60, width=80, squares=[('green', 0, 0, 40, 40)]),
              colour_scene(height=80, width=80, squares=[('yellow', 40, 40, 80, 80)])]
    before = len(encoder.image_batches)
    results = detector.detect_batch(frames)
    # 96×128 encoder inputs for the 4:3 frames (the small one upscaled), 96×96 for the last
    assert encoder.image_batches[before:] == [3, 1]
    assert [[d.label for d in r.detections] for r in results] == [['green'], ['yellow'],
                                                                  ['green'], ['yellow']]


def test_a_heatmap_localizer_needs_an_encoder_with_patch_maps():
    class WindowsOnly(ColourEncoder):
        encode_patches = None
    with pytest.raises(ValueError, match='localizer dense needs an encoder with patch maps'):
        ZeroShotDetector(WindowsOnly(), DENSE)
    detector = ZeroShotDetector(WindowsOnly(), COLOUR_SETTINGS)
    with pytest.raises(ValueError, match='gradcam'):
        detector.update(localizer='gradcam')
    assert detector.settings.localizer == 'windows'


def test_clip_patch_embeddings_are_the_last_blocks_values_projected(tiny_clip):
    # Hook the model's own forward pass (at its input size) and rebuild MaskCLIP's path.
    model, values = tiny_clip.model, {}
    last = model.vision_model.encoder.layers[-1]
    hook = last.self_attn.v_proj.register_forward_hook(
        lambda module, inputs, output: values.setdefault('v', output))
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model.get_image_features(pixel_values=pixels)
        hook.remove()
        expected = model.visual_projection(model.vision_model.post_layernorm(
            last.self_attn.out_proj(values['v'][:, 1:])))
    patches = tiny_clip.encode_patches(pixels)
    assert patches.shape == (2, 2, 2, model.config.projection_dim)  # 32 px, 16 px patches
    torch.testing.assert_close(patches.flatten(1, 2),
                               torch.nn.functional.normalize(expected, dim=-1))
    wide = tiny_clip.encode_patches(torch.randn(1, 3, 48, 80))  # any size: interpolated
    assert wide.shape[1:3] == (3, 5)


def grad_cam_reference(encoder, layer, pixels):
    """
    Grad-CAM's inputs through the model's own forward pass: `layer`'s output and its gradient.

    Returns (texts [3, D], logits [N, 3], activations with .grad of label 1's logit).
    """
    seen = {}

    def keep(module, inputs, output):
        output.retain_grad()
        seen['activations'] = output
    hook = layer.register_forward_hook(keep)
    texts = encoder.encode_texts(['a photo of a hammer.', 'a photo of a wrench.',
                                  'a photo of an empty workbench.']).clone()
    image = torch.nn.functional.normalize(
        encoder.model.get_image_features(pixel_values=pixels).pooler_output, dim=-1)
    logits = encoder.logit_scale * image @ texts.T
    logits[:, 1].sum().backward()
    hook.remove()
    return texts, logits.detach(), seen['activations']


def test_clip_gradcam_equals_grad_cam_through_the_models_own_forward(tiny_clip):
    pixels = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    texts, logits, activations = grad_cam_reference(
        tiny_clip, tiny_clip.model.vision_model.encoder.layers[-1].layer_norm1, pixels)
    weights = activations.grad[:, 1:].mean(dim=1, keepdim=True)
    expected = (weights * activations[:, 1:]).sum(dim=-1).relu().detach()

    got_logits, maps = tiny_clip.gradcam(pixels, texts, num_maps=2)
    torch.testing.assert_close(got_logits, logits)
    assert maps.shape == (2, 2, 2, 2)
    torch.testing.assert_close(maps[:, 1].flatten(1), expected)


@pytest.mark.parametrize('localizer', ['dense', 'gradcam'])
def test_heatmap_localizers_run_on_a_real_clip(tiny_clip, localizer):
    settings = replace(COLOUR_SETTINGS, localizer=localizer, map_size=48, score_threshold=0.0,
                       classification='windows')
    detector = ZeroShotDetector(tiny_clip, settings)
    frame = np.random.default_rng(0).integers(0, 256, (60, 90, 3), np.uint8)
    (result,) = detector.detect_batch([frame])
    assert result.heatmaps.shape == (3, 3, 4)  # 48×64 input, 16 px patches
    assert np.isfinite(result.heatmaps).all() and result.heatmaps.max() <= 1.0 + 1e-6
    assert sorted(label for label, _ in result.classification) == ['blue', 'green', 'red']
    assert result.detections and all(0.0 <= d.score <= 1.0 for d in result.detections)
    for found in result.detections:
        x0, y0, x1, y1 = found.box
        assert 0 <= x0 < x1 <= 90 and 0 <= y0 < y1 <= 60


def test_the_box_regressor_moves_windows_only():
    encoder = ColourEncoder()
    encoder.box_regressor = object()  # a model with one: used by windows, not by dense
    assert ZeroShotDetector(encoder, COLOUR_SETTINGS).regresses_boxes
    assert not ZeroShotDetector(encoder, DENSE).regresses_boxes


def test_convnext_gradcam_equals_grad_cam_through_the_models_own_forward(tiny_conv_dir):
    # Grad-CAM's original setting: the last convolutional feature map, through the
    # dual encoder's own forward pass
    encoder = load_clip(str(tiny_conv_dir), 'cpu')
    pixels = torch.randn(2, 3, 48, 64, generator=torch.Generator().manual_seed(1))
    texts, logits, activations = grad_cam_reference(
        encoder, encoder.model.vision_model.encoder.stages[-1], pixels)
    weights = activations.grad.mean(dim=(-2, -1), keepdim=True)
    expected = (weights * activations).sum(dim=1).relu().detach()

    got_logits, maps = encoder.gradcam(pixels, texts, num_maps=2)
    torch.testing.assert_close(got_logits, logits)
    assert encoder.patch_size == 8  # a 4 px stem, then one stage halving it
    assert maps.shape == (2, 2, 6, 8)
    torch.testing.assert_close(maps[:, 1], expected)


def test_a_convolutional_model_runs_windows_and_gradcam_and_dense_refuses_it(tiny_conv_dir):
    encoder = load_clip(str(tiny_conv_dir), 'cpu')
    frame = np.random.default_rng(0).integers(0, 256, (60, 90, 3), np.uint8)
    windows = ZeroShotDetector(encoder, replace(COLOUR_SETTINGS, score_threshold=0.0))
    (result,) = windows.detect_batch([frame])
    assert sorted(label for label, _ in result.classification) == ['blue', 'green', 'red']
    assert result.detections
    gradcam = ZeroShotDetector(encoder, replace(COLOUR_SETTINGS, localizer='gradcam',
                                                map_size=48, score_threshold=0.0))
    (result,) = gradcam.detect_batch([frame])
    assert result.heatmaps.shape == (3, 6, 9)  # 48×72 input, stride 8
    assert np.isfinite(result.heatmaps).all()
    with pytest.raises(ValueError, match='localizer dense needs an encoder with patch maps'):
        ZeroShotDetector(encoder, replace(COLOUR_SETTINGS, localizer='dense'))
