"""
The owlvit localizer: OWL-ViT and OWLv2 through transformers.

Checked against the models' own forward passes and image processors (tiny
random-weight models of the real architectures).
"""
from dataclasses import replace

from clip_perception.engine.detector import DetectorSettings, ZeroShotDetector
from clip_perception.engine.model_loading import load_clip, load_encoder, load_owl, model_type
from clip_perception.engine.model_loading import ModelLoadError
from clip_perception.engine.owl import owl_detections, OwlOutput
from clip_perception.engine.preprocess import frame_to_device
import cv2
import numpy as np
from PIL import Image
import pytest
import torch

SETTINGS = DetectorSettings(labels=('hammer', 'wrench'), prompt_templates=('a photo of a {}.',),
                            localizer='owlvit', score_threshold=0.0, max_detections=5)


def smooth_frame(height, width, seed=0):
    """Draw a uint8 RGB frame without pixel noise (resizers agree best on smooth images)."""
    coarse = np.random.default_rng(seed).integers(0, 256, (height // 8 + 1, width // 8 + 1, 3))
    return cv2.resize(coarse.astype(np.uint8), (width, height), interpolation=cv2.INTER_CUBIC)


@pytest.fixture
def owl(tiny_owl_dir):
    return load_owl(str(tiny_owl_dir), 'cpu')


@pytest.mark.parametrize('shape', [(60, 90), (120, 80), (240, 320)])
def test_device_preprocessing_matches_the_models_image_processor(owl, tiny_owl_dir, shape):
    from transformers import AutoImageProcessor
    processor = AutoImageProcessor.from_pretrained(tiny_owl_dir)
    frame = smooth_frame(*shape)
    expected = processor(images=Image.fromarray(frame), return_tensors='pt')['pixel_values']
    ours = owl.model_input(frame_to_device(frame, torch.device('cpu')))
    assert ours.shape == expected.shape
    # in grey levels of the input: OWL-ViT's bicubic stretch differs from PIL's by
    # rounding (at most 4 levels, 0.25 on average); OWLv2's pad, Gaussian and linear
    # zoom are scipy's operations done in torch (1e-3 levels)
    levels = (ours - expected).abs() * torch.tensor(owl.settings.std).view(1, 3, 1, 1) * 255
    limits = {'owlvit': (4.0, 0.25), 'owlv2': (1e-3, 1e-4)}[owl.kind]
    assert levels.max() <= limits[0] and levels.mean() <= limits[1]


def test_cached_queries_give_the_models_own_logits_and_boxes(owl):
    texts = ['a photo of a hammer.', 'a photo of a wrench.']
    tokens = owl.tokenizer(texts, padding=True, return_tensors='pt')
    pixels = torch.randn(1, 3, owl.settings.crop, owl.settings.crop,
                         generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        reference = owl.model(input_ids=tokens['input_ids'],
                              attention_mask=tokens['attention_mask'], pixel_values=pixels)
    logits, boxes = owl.predict(pixels, owl.encode_texts(texts))
    torch.testing.assert_close(logits, reference.logits)
    torch.testing.assert_close(boxes, reference.pred_boxes)


def test_boxes_in_frame_pixels_match_the_processors_post_processing(owl, tiny_owl_dir):
    from transformers import AutoImageProcessor
    processor = AutoImageProcessor.from_pretrained(tiny_owl_dir)
    frame = smooth_frame(60, 90)
    queries = owl.encode_texts(['a photo of a hammer.'])
    (output,) = owl.detect_frames([frame_to_device(frame, torch.device('cpu'))], queries)
    logits, boxes = owl.predict(owl.model_input(frame_to_device(frame, torch.device('cpu'))),
                                queries)

    class Outputs:
        pass
    outputs = Outputs()
    outputs.logits, outputs.pred_boxes = logits, boxes
    (expected,) = processor.post_process_object_detection(outputs, threshold=0.0,
                                                          target_sizes=[(60, 90)])
    # the processor leaves boxes unclipped; the node clips them to the frame
    limit = torch.tensor([90.0, 60.0, 90.0, 60.0])
    torch.testing.assert_close(output.boxes, torch.minimum(expected['boxes'].clamp(min=0), limit))


def test_the_detector_runs_owl_and_embeds_queries_once_per_label_change(owl):
    calls = []
    encode = owl.encode_texts
    owl.encode_texts = lambda texts: calls.append(list(texts)) or encode(texts)
    detector = ZeroShotDetector(owl, SETTINGS)
    frames = [smooth_frame(60, 90), smooth_frame(120, 80, seed=1)]
    results = detector.detect_batch(frames)
    results += detector.detect_batch(frames)
    assert len(calls) == 1  # the text tower ran once, not per frame
    for result, frame in zip(results, frames * 2):
        assert sorted(label for label, _ in result.classification) == ['hammer', 'wrench']
        assert len(result.detections) <= 5  # random weights: boxes may be degenerate
        height, width = frame.shape[:2]
        for found in result.detections:
            x0, y0, x1, y1 = found.box
            assert 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height
            assert 0.0 <= found.score <= 1.0
    detector.update(labels=('tape measure',))
    assert len(calls) == 2 and calls[-1][0] == 'a photo of a tape measure.'
    (result,) = detector.detect_batch(frames[:1])
    assert [label for label, _ in result.classification] == ['tape measure']
    assert {d.label for d in result.detections} <= {'tape measure'}


def test_patch_predictions_become_thresholded_per_label_nms_detections():
    # four patches, two labels: two overlapping hammer boxes, a wrench, a weak patch
    logits = torch.logit(torch.tensor([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.2, 0.1]]))
    boxes = torch.tensor([[10.0, 10, 50, 50], [12, 10, 52, 50], [60, 20, 90, 40],
                          [0, 0, 5, 5]])
    found, scores = owl_detections(OwlOutput(logits, boxes), ('hammer', 'wrench'),
                                   score_threshold=0.5, nms_iou=0.5, max_detections=10)
    assert [(d.label, round(d.score, 4), d.box) for d in found] == [
        ('hammer', 0.9, (10.0, 10.0, 50.0, 50.0)), ('wrench', 0.7, (60.0, 20.0, 90.0, 40.0))]
    np.testing.assert_allclose(scores, [0.9, 0.7], rtol=1e-6)
    degenerate = OwlOutput(logits, torch.tensor([[10.0, 10, 10, 50]] * 4))
    assert owl_detections(degenerate, ('hammer', 'wrench'), 0.5, 0.5, 10)[0] == []


def test_the_model_and_the_localizer_must_agree(owl, tiny_owl_dir, tiny_clip_dir):
    assert model_type(tiny_owl_dir) == owl.kind
    with pytest.raises(ModelLoadError, match='run it with localizer owlvit'):
        load_clip(str(tiny_owl_dir), 'cpu')
    with pytest.raises(ModelLoadError, match='not OWL-ViT or OWLv2'):
        load_encoder(str(tiny_clip_dir), 'cpu', localizer='owlvit')
    with pytest.raises(ValueError, match='localizer owlvit needs an OWL-ViT or OWLv2 model'):
        ZeroShotDetector(load_clip(str(tiny_clip_dir), 'cpu'), SETTINGS)
    with pytest.raises(ValueError, match='localizer windows needs a CLIP model'):
        ZeroShotDetector(owl, replace(SETTINGS, localizer='windows'))


def test_whole_image_classification_needs_clip():
    with pytest.raises(ValueError, match='classification whole_image needs a CLIP model'):
        replace(SETTINGS, classification='whole_image')


def test_the_bundled_owl_demo_detector_loads_like_a_hub_checkpoint():
    from clip_perception.ros.parameters import settings_from_file
    from clip_perception.tools.assets import DEMO_MODEL
    from transformers import OwlViTForObjectDetection
    directory = DEMO_MODEL.parent / 'owl_demo'
    assert sum(p.stat().st_size for p in directory.iterdir()) < 20 * 2**20
    model = OwlViTForObjectDetection.from_pretrained(directory, use_safetensors=True)
    assert model.config.vision_config.image_size == 160
    settings = settings_from_file(DEMO_MODEL.parent.parent / 'config' / 'demo_owlvit.yaml')
    detector = ZeroShotDetector(load_owl(str(directory), 'cpu'), settings)
    result = detector.detect(smooth_frame(240, 320))
    assert [label for label, _ in sorted(result.classification)] == sorted(settings.labels)
