"""Contrastive training: the loss goes down and the checkpoint loads through the engine."""
import json

from clip_perception.engine.detector import DetectorSettings, ScoredWindows, ZeroShotDetector
from clip_perception.engine.model_loading import load_clip
from clip_perception.engine.prompts import ClassEmbeddings
from clip_perception.engine.sliding_windows.box_regression import REGRESSOR_FILE
from clip_perception.engine.sliding_windows.grid import window_grid
from clip_perception.tools.compare_towers import main as compare_towers
from clip_perception.tools.datasets import read_captions, read_rgb
from clip_perception.tools.make_dataset import (demo_windows, make_crops, make_hard_crops,
                                                window_captions)
from clip_perception.tools.model_building import (build_clip, build_tokenizer, default_corpus,
                                                  TEST_SIZE)
from clip_perception.tools.synthetic import make_scene, PlacedObject
from clip_perception.tools.train import encode_captions, encode_image, encode_tokens
from clip_perception.tools.train import main as train_main
from clip_perception.tools.train import symmetric_info_nce
import numpy as np
import pytest
from resume_check import check_a_stopped_run_resumes
import torch


def test_info_nce_is_clip_loss_when_all_pairs_differ_and_shares_duplicates():
    torch.manual_seed(0)
    images = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    texts = torch.nn.functional.normalize(torch.randn(4, 8), dim=-1)
    scale = torch.tensor(np.log(10.0))
    logits = 10.0 * images @ texts.T
    clip = (torch.nn.functional.cross_entropy(logits, torch.arange(4)) +
            torch.nn.functional.cross_entropy(logits.T, torch.arange(4))) / 2
    assert symmetric_info_nce(images, texts, scale, torch.arange(4)) == pytest.approx(clip.item())
    # two pairs of one group: each image's target is split over both texts
    shared = symmetric_info_nce(images, texts, scale, torch.tensor([0, 0, 1, 2]))
    assert shared.item() != pytest.approx(clip.item())
    assert symmetric_info_nce(images, images, torch.tensor(np.log(100.0)), torch.arange(4)) < 0.01


def test_tokenizer_merges_the_most_frequent_pair_first_and_numbers_tokens_the_same():
    # "abc" ×2, "ab", "bc": (b, c</w>) is seen 3 times, then (a, bc</w>) twice
    tokenizer = build_tokenizer(['abc ABC ab', 'bc'], vocab_size=50)
    assert tokenizer.convert_ids_to_tokens(range(4, len(tokenizer))) == [
        'a', 'b', 'b</w>', 'c</w>', 'bc</w>', 'abc</w>', 'ab</w>']
    assert tokenizer.convert_ids_to_tokens(tokenizer('abc ab d')['input_ids']) == [
        tokenizer.bos_token, 'abc</w>', 'ab</w>', tokenizer.unk_token, tokenizer.eos_token]
    # the ids pick the embedding rows a model starts from: the same corpus, the same ids
    corpus = default_corpus(extra=['a photo of a tape measure on a workbench.'])
    first, second = (build_tokenizer(corpus, vocab_size=300, max_length=32) for _ in range(2))
    assert first.get_vocab() == second.get_vocab()


def test_images_smaller_than_the_input_are_encoded_with_interpolated_positions():
    # progressive resizing (--low-res) trains the first steps on smaller images
    model = build_clip(build_tokenizer(default_corpus(), vocab_size=200), TEST_SIZE, seed=0)
    small = torch.rand(2, 3, TEST_SIZE.image_size // 2, TEST_SIZE.image_size // 2)
    embedding = encode_image(model, small)
    assert embedding.shape == (2, model.config.projection_dim)
    assert torch.allclose(embedding.norm(dim=-1), torch.ones(2))
    embedding.sum().backward()
    assert model.vision_model.embeddings.position_embedding.weight.grad.abs().sum() > 0
    full = torch.rand(2, 3, TEST_SIZE.image_size, TEST_SIZE.image_size)
    with torch.no_grad():  # at the input size the positions are the model's own
        assert torch.equal(encode_image(model, full), torch.nn.functional.normalize(
            model.get_image_features(pixel_values=full).pooler_output, dim=-1))


def test_repeated_captions_are_encoded_once_with_the_same_embeddings_and_gradients():
    tokenizer = build_tokenizer(default_corpus(), vocab_size=200)
    model = build_clip(tokenizer, TEST_SIZE, seed=0)
    tokens = tokenizer(['a photo of a hammer.', 'a photo of a wrench.', 'a photo of pliers.'],
                       padding=True, return_tensors='pt')
    ids = torch.tensor([2, 0, 2, 2, 1, 0])
    weights = torch.randn(len(ids), model.config.projection_dim)

    def embeddings_and_gradients(encode):
        model.zero_grad()
        embeddings = encode()
        (embeddings * weights).sum().backward()
        return embeddings.detach(), [p.grad.clone() for p in model.text_model.parameters()]

    calls = []
    hook = model.text_model.register_forward_hook(
        lambda module, args, kwargs, output: calls.append(kwargs['input_ids'].shape[0]),
        with_kwargs=True)
    once, once_grads = embeddings_and_gradients(lambda: encode_captions(model, tokens, ids, 'cpu'))
    assert calls == [3]
    hook.remove()
    every, every_grads = embeddings_and_gradients(lambda: encode_tokens(
        model, tokens['input_ids'][ids], tokens['attention_mask'][ids]))
    assert torch.allclose(once, every, atol=1e-6)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(once_grads, every_grads))


def test_window_captions_follow_r_cnn_labels():
    hammer = PlacedObject('hammer', (10, 10, 50, 30))
    wrench = PlacedObject('wrench', (62, 10, 90, 50))
    windows = np.array([[8, 8, 52, 32], [0, 0, 60, 60], [30, 5, 70, 35], [100, 100, 160, 160],
                        [0, 0, 90, 60], [30, 0, 90, 60], [5, 5, 70, 40], [10, 10, 36, 30]])
    alone = window_captions(windows, [hammer])
    assert alone[0] == (0, None, 'hammer')  # fits the hammer: IoU 0.76
    assert alone[1] == (1, 'a photo of a small tool on a large workbench.', '')  # IoU 0.22
    assert alone[2] == (2, 'a photo of part of a tool.', '')  # half of it, IoU 0.25
    assert alone[3] == (3, 'a photo of an empty workbench.', '')
    assert alone[6] is None  # whole hammer, IoU 0.35: between negative and positive
    assert alone[7] is None  # IoU 0.65 but a third of the hammer (its head) is cut off
    both = window_captions(windows, [hammer, wrench])
    assert both[4] == (4, 'a photo of several tools.', '')
    assert both[5] is None  # the wrench whole, half of the hammer: ambiguous


def test_synthetic_scenes_are_deterministic_and_boxes_are_tight():
    a, b = make_scene(np.random.default_rng(5)), make_scene(np.random.default_rng(5))
    assert np.array_equal(a.image, b.image) and a.objects == b.objects
    assert a.objects
    for obj in a.objects:
        x0, y0, x1, y1 = obj.box
        assert 0 <= x0 < x1 <= 320 and 0 <= y0 < y1 <= 240


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_training_lowers_the_loss_and_the_checkpoint_loads_through_the_engine(tmp_path):
    make_crops(tmp_path / 'data', count=192, seed=3, crop=32)
    (tmp_path / 'model').mkdir()
    (tmp_path / 'model' / REGRESSOR_FILE).write_bytes(b'fitted to other weights')
    train_main(['--data', str(tmp_path / 'data'), '--out', str(tmp_path / 'model'),
                '--size', 'test', '--steps', '100', '--batch-size', '32', '--lr', '3e-3',
                '--warmup', '5', '--low-res', '16', '--low-res-steps', '20', '--seed', '0'])
    summary = json.loads((tmp_path / 'model' / 'training.json').read_text())
    losses = summary['loss']
    assert len(losses) == 100
    # batch losses are noisy (32 of 192 pairs): compare means of many steps
    assert np.mean(losses[-25:]) < np.mean(losses[:10]) - 0.2, losses
    encoder = load_clip(str(tmp_path / 'model'), device='cpu')
    assert (tmp_path / 'model' / 'model.safetensors').is_file()
    assert not (tmp_path / 'model' / REGRESSOR_FILE).exists()  # it belonged to other weights
    detector = ZeroShotDetector(encoder, DetectorSettings(
        background_prompts=('a photo of an empty workbench.', 'a photo of part of a tool.')))
    result = detector.detect(make_scene(np.random.default_rng(9)).image)
    assert len(result.classification) == 5


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_crops_written_by_worker_processes_are_the_same_data_set(tmp_path):
    alone = make_crops(tmp_path / 'one', count=60, seed=4, crop=24)
    shared = make_crops(tmp_path / 'two', count=60, seed=4, crop=24, jobs=2)
    assert len(alone) == len(shared) == 60
    assert len({item.caption for item in alone}) > 3
    for a, b in zip(alone, shared, strict=True):
        assert (a.caption, a.label) == (b.caption, b.label)
        assert a.path.name == b.path.name
        assert np.array_equal(read_rgb(a.path), read_rgb(b.path))


class _AlwaysHammer:
    """A detector double that names every window 'hammer'."""

    def __init__(self, windows):
        self.settings = DetectorSettings(labels=('hammer', 'wrench'),
                                         background_prompts=('bench', 'part'), windows=windows)
        self.encoder = type('Encoder', (), {'settings': type('S', (), {'crop': 24})})()

    def class_embeddings(self):
        return ClassEmbeddings(self.settings.labels, self.settings.background_prompts,
                               torch.zeros(4, 1))

    def score_windows(self, frames, windows=None):
        (frame,) = frames
        (grid,) = windows or [window_grid(frame.shape[0], frame.shape[1], self.settings.windows)]
        logits = np.zeros((len(grid), 4))
        logits[:, 0] = 5.0
        return [ScoredWindows(np.zeros(2), grid, torch.zeros(len(grid), 1), logits,
                              grid.astype(float))]


def test_hard_crops_are_the_windows_the_detector_gets_wrong(tmp_path):
    items = make_hard_crops(tmp_path / 'hard', _AlwaysHammer(demo_windows()), count=40, seed=7)
    assert read_captions(tmp_path / 'hard') == items and len(items) == 40
    # every window is called a hammer, so the hammer windows are the only right ones
    assert all(item.label != 'hammer' for item in items)
    assert {item.label for item in items} >= {''}
    assert all(read_rgb(item.path).shape == (24, 24, 3) for item in items)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_stopped_run_resumes_to_the_weights_of_an_uninterrupted_one(tmp_path):
    make_crops(tmp_path / 'data', count=64, seed=5, crop=32)
    make_crops(tmp_path / 'probe', count=16, seed=6, crop=32)
    run = ['--data', str(tmp_path / 'data'), '--eval-data', str(tmp_path / 'probe'),
           '--size', 'test-conv', '--steps', '6', '--batch-size', '16', '--warmup', '2',
           '--eval-every', '3', '--checkpoint-every', '2', '--seed', '0']
    _, split = check_a_stopped_run_resumes(train_main, run, tmp_path)
    history = json.loads((split / 'training.json').read_text())
    assert [point['step'] for point in history['probe']] == [3, 6]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_towers_are_compared_on_a_time_budget(tmp_path, capsys):
    make_crops(tmp_path / 'data', count=64, seed=5, crop=32)
    make_crops(tmp_path / 'probe', count=16, seed=6, crop=32)
    compare_towers(['--data', str(tmp_path / 'data'), '--eval-data', str(tmp_path / 'probe'),
                    '--out', str(tmp_path / 'towers'), '--tower', 'test', 'test-conv',
                    '--minutes', '0.05', '--eval-every', '2', '--batch-size', '16'])
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[1] for line in lines if line.startswith('tower:')] == [
        'test', 'test-conv']
    curves = json.loads((tmp_path / 'towers' / 'curves.json').read_text())
    for tower in ('test', 'test-conv'):
        minutes = [m for m, _ in curves[tower]['probe']]
        assert minutes == sorted(minutes) and minutes[-1] >= 0.05
        assert 0 <= curves[tower]['probe'][-1][1] <= 1
        assert load_clip(str(tmp_path / 'towers' / tower), device='cpu')
