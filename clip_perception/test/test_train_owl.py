"""The OWL-ViT trainer: DETR's losses and matching, the CLIP-to-OWL conversion, a short run."""
from dataclasses import replace
import json

from clip_perception.engine.detector import DetectorSettings, ZeroShotDetector
from clip_perception.engine.model_loading import load_owl
from clip_perception.tools.datasets import read_rgb
from clip_perception.tools.make_dataset import make_scenes
from clip_perception.tools.model_building import build_random_model_directory, TEST_SIZE
from clip_perception.tools.train_owl import (_with_centre_positives, generalized_box_iou, match,
                                             owl_from_clip, set_prediction_loss,
                                             sigmoid_focal_loss)
from clip_perception.tools.train_owl import main as train_owl_main
import numpy as np
import pytest
from resume_check import check_a_stopped_run_resumes
import torch

# OWL-ViT compares class embeddings of the text width with the projected queries.
OWL_READY = replace(TEST_SIZE, projection_dim=TEST_SIZE.text_width)


@pytest.fixture(scope='module')
def clip_dir(tmp_path_factory):
    return build_random_model_directory(tmp_path_factory.mktemp('clip') / 'model', OWL_READY)


def test_generalized_iou_by_hand():
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 2.0, 2.0], [3.0, 0.0, 4.0, 1.0]])
    # IoU 1/7, hull 9, union 7: 1/7 - 2/9; identical: 1; apart: 0 - (8 - 5) / 8
    expected = torch.tensor([[1 / 7 - 2 / 9, 1.0, -3 / 8]])
    torch.testing.assert_close(generalized_box_iou(a, b), expected)


def test_focal_loss_by_hand():
    logits = torch.tensor([0.0, 2.0])
    targets = torch.tensor([1.0, 0.0])
    p = torch.sigmoid(torch.tensor(2.0))
    expected = torch.tensor([0.25 * 0.25 * torch.log(torch.tensor(2.0)),
                             0.75 * p ** 2 * -torch.log(1 - p)])
    torch.testing.assert_close(sigmoid_focal_loss(logits, targets), expected)


def test_each_truth_is_matched_to_the_patch_that_fits_it():
    boxes = torch.tensor([[0.0, 0.0, 0.2, 0.2], [0.5, 0.5, 0.9, 0.9], [0.1, 0.6, 0.3, 0.9]])
    logits = torch.zeros(3, 2)
    truths = torch.tensor([[0.52, 0.5, 0.9, 0.88], [0.0, 0.02, 0.2, 0.2]])
    patches, matched = match(logits, boxes, torch.tensor([1, 0]), truths)
    assert dict(zip(matched.tolist(), patches.tolist())) == {0: 1, 1: 0}


def test_the_set_loss_is_low_for_a_right_prediction_and_high_for_a_wrong_one():
    truth = (torch.tensor([0]), torch.tensor([[0.2, 0.2, 0.6, 0.6]]))
    boxes = torch.tensor([[[0.4, 0.4, 0.4, 0.4], [0.8, 0.8, 0.1, 0.1]]])  # cx, cy, w, h
    right = set_prediction_loss(torch.tensor([[[6.0, -6.0], [-6.0, -6.0]]]), boxes, [truth])
    wrong = set_prediction_loss(torch.tensor([[[-6.0, 6.0], [6.0, -6.0]]]),
                                boxes.flip(1), [truth])
    assert right['l1'] < 1e-6 and right['giou'] < 1e-6 and right['class'] < 0.01
    assert wrong['total'] > 10 * right['total']
    empty = set_prediction_loss(torch.zeros(1, 2, 2), boxes, [(torch.tensor([], dtype=torch.long),
                                                               torch.zeros(0, 4))])
    assert empty['l1'] == 0 and empty['class'] > 0


def test_one_to_many_assignment_adds_the_patches_near_each_centre():
    # a 4 × 4 grid, patch centres at 0.125, 0.375, ...; the big truth's central half
    # holds patches 0, 1, 4, 5; the small one's only patch 5, which goes to it
    truths = torch.tensor([[0.0, 0.0, 0.5, 0.5], [0.25, 0.25, 0.5, 0.5]])
    patches, matched = _with_centre_positives(np.array([10]), np.array([1]), truths, 16, 0.25)
    assert dict(zip(patches.tolist(), matched.tolist())) == {0: 0, 1: 0, 4: 0, 5: 1, 10: 1}
    logits, boxes = torch.zeros(1, 16, 2), torch.full((1, 16, 4), 0.25)
    target = [(torch.tensor([0, 1]), truths)]
    one = set_prediction_loss(logits, boxes, target)
    many = set_prediction_loss(logits, boxes, target, centre_radius=0.25)
    # every patch scores 0.5 for every label: more positives, the same loss per positive
    # on them and less on the negatives per positive
    assert many['class'] < one['class']


def test_the_owl_backbone_is_the_clip_towers(clip_dir):
    from transformers import AutoTokenizer, CLIPModel
    clip = CLIPModel.from_pretrained(clip_dir)
    tokenizer = AutoTokenizer.from_pretrained(clip_dir)
    owl, owl_tokenizer = owl_from_clip(clip_dir, OWL_READY.image_size)
    texts = ['a photo of a hammer.', 'a photo of a tape measure.']
    expected = clip.get_text_features(**tokenizer(texts, padding=True,
                                                  return_tensors='pt')).pooler_output
    tokens = owl_tokenizer(texts, padding=True, return_tensors='pt')
    assert tokens['input_ids'][:, 0].min() > 0  # OWL-ViT's query mask: 0 is padding
    got = owl.owlvit.get_text_features(**tokens).pooler_output
    torch.testing.assert_close(got, expected)
    pixels = torch.randn(2, 3, OWL_READY.image_size, OWL_READY.image_size)
    torch.testing.assert_close(owl.owlvit.get_image_features(pixel_values=pixels).pooler_output,
                               clip.get_image_features(pixel_values=pixels).pooler_output)


def test_every_patch_starts_at_its_grid_box_with_gradients_flowing(clip_dir):
    owl, _ = owl_from_clip(clip_dir, OWL_READY.image_size)
    pixels = torch.randn(2, 3, OWL_READY.image_size, OWL_READY.image_size)
    feature_map, _ = owl.image_embedder(pixel_values=pixels)
    features = feature_map.flatten(1, 2)
    boxes = owl.box_predictor(features, feature_map)
    torch.testing.assert_close(boxes, torch.sigmoid(owl.box_bias).expand_as(boxes))
    boxes.sum().backward()  # the sigmoid is not saturated: the box head learns
    assert owl.box_head.dense2.weight.grad.abs().sum() > 0


@pytest.mark.slow
def test_a_short_run_lowers_the_loss_and_the_node_loads_the_result(clip_dir, tmp_path):
    scenes = make_scenes(tmp_path / 'scenes', count=12, blank=2, seed=5)
    out = tmp_path / 'owl'
    train_owl_main(['--init', str(clip_dir), '--data', str(tmp_path / 'scenes'),
                    '--out', str(out), '--image-size', '64', '--steps', '40',
                    '--batch-size', '4', '--warmup', '5', '--lr', '3e-3'])
    summary = json.loads((out / 'training.json').read_text())
    losses = summary['loss']
    assert sum(losses[-10:]) < sum(losses[:10])
    encoder = load_owl(str(out), 'cpu')
    assert encoder.kind == 'owlvit' and encoder.settings.crop == 64
    detector = ZeroShotDetector(encoder, DetectorSettings(localizer='owlvit',
                                                          score_threshold=0.0))
    result = detector.detect(read_rgb(scenes[0].path))
    assert len(result.classification) == 5 and result.detections


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_stopped_owl_run_resumes_to_the_weights_of_an_uninterrupted_one(clip_dir, tmp_path):
    make_scenes(tmp_path / 'scenes', count=6, blank=1, seed=6)
    run = ['--init', str(clip_dir), '--data', str(tmp_path / 'scenes'), '--image-size', '64',
           '--steps', '6', '--batch-size', '2', '--warmup', '2', '--checkpoint-every', '2',
           '--centre-radius', '0.25']
    runs = check_a_stopped_run_resumes(train_owl_main, run, tmp_path)
    losses = [json.loads((out / 'training.json').read_text())['loss'] for out in runs]
    assert losses[0] == losses[1] and len(losses[0]) == 6
