"""Loading CLIP through the real path, offline, and preprocessing like CLIPImageProcessor."""
import json
import shutil

from clip_perception.engine.detector import DetectorSettings, ZeroShotDetector
from clip_perception.engine.encoder import CLIP_MEAN, CLIP_STD
from clip_perception.engine.model_loading import (load_clip, ModelLoadError, read_image_settings,
                                                  resolve_device, resolve_precision)
from clip_perception.engine.preprocess import classification_input, frame_to_device, Normalizer
import cv2
import numpy as np
import pytest
import torch

CPU = torch.device('cpu')


def smooth_image(height, width, seed=0):
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    blurred = cv2.GaussianBlur(noise, (0, 0), 3).astype(np.float64)
    return ((blurred - blurred.min()) / (np.ptp(blurred) + 1e-9) * 255).astype(np.uint8)


def test_a_saved_model_directory_loads_and_encodes(tiny_clip_dir):
    encoder = load_clip(str(tiny_clip_dir), device='cpu', precision='auto')
    assert encoder.dtype == torch.float32 and encoder.device == CPU
    assert not encoder.model.training
    assert encoder.settings.crop == encoder.model.config.vision_config.image_size
    texts = encoder.encode_texts(['a photo of a hammer.', 'a photo of a wrench.'])
    assert texts.shape == (2, encoder.model.config.projection_dim)
    assert torch.allclose(texts.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert not torch.allclose(texts[0], texts[1])
    # The end-of-text token pools the text: its id must match the tokenizer's.
    assert encoder.model.config.text_config.eos_token_id == encoder.tokenizer.eos_token_id
    assert encoder.logit_scale == pytest.approx(1 / 0.07, rel=1e-3)  # fresh CLIPConfig


def test_the_real_architecture_runs_the_whole_detector(tiny_clip_dir):
    encoder = load_clip(str(tiny_clip_dir), device='cpu')
    detector = ZeroShotDetector(encoder, DetectorSettings(score_threshold=0.0))
    result = detector.detect(smooth_image(96, 128))
    assert sorted(label for label, _ in result.classification) == sorted(
        detector.settings.labels)
    # each label's pooled window probability (classification: windows)
    assert all(0.0 <= score <= 1.0 for _, score in result.classification)
    for found in result.detections:
        x0, y0, x1, y1 = found.box
        assert 0 <= x0 < x1 <= 128 and 0 <= y0 < y1 <= 96
        assert 0.0 <= found.score <= 1.0


def test_released_checkpoint_layout_is_read(tiny_clip_dir, tmp_path):
    """openai/* checkpoints carry a flat preprocessor_config.json instead."""
    released = tmp_path / 'released'
    shutil.copytree(tiny_clip_dir, released)
    (released / 'processor_config.json').unlink()
    (released / 'preprocessor_config.json').write_text(json.dumps({
        'crop_size': 28, 'size': 30, 'image_mean': [0.5, 0.5, 0.5], 'image_std': [0.2] * 3,
        'image_processor_type': 'CLIPImageProcessor'}))
    settings = read_image_settings(released, 32)
    assert (settings.resize, settings.crop, settings.mean, settings.std) == \
        (30, 28, (0.5, 0.5, 0.5), (0.2, 0.2, 0.2))
    assert load_clip(str(released), device='cpu').settings == settings


def test_missing_directory_is_named(tmp_path):
    with pytest.raises(ModelLoadError, match='does not exist'):
        load_clip(str(tmp_path / 'nowhere'), device='cpu')


def test_a_hub_id_that_cannot_be_downloaded_is_one_line(monkeypatch):
    from huggingface_hub.errors import LocalEntryNotFoundError
    import clip_perception.engine.model_loading as loading
    monkeypatch.delenv('HF_HUB_OFFLINE', raising=False)

    def no_network(model, allow_patterns=None, local_files_only=False):
        if local_files_only:
            raise LocalEntryNotFoundError('not cached')
        raise OSError('Name or service not known\n' + 'a long traceback\n' * 40)
    monkeypatch.setattr('huggingface_hub.snapshot_download', no_network)
    with pytest.raises(ModelLoadError) as error:
        loading.resolve_model_directory('someone/some-clip')
    assert str(error.value) == ("model 'someone/some-clip' is not in the Hugging Face cache and "
                                'could not be downloaded (OSError: Name or service not known)')


def test_uncached_hub_id_offline_says_how_to_get_it(monkeypatch):
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')
    with pytest.raises(ModelLoadError, match="'nobody/no-such-clip'.*HF_HUB_OFFLINE"):
        load_clip('nobody/no-such-clip', device='cpu')


def test_pickle_checkpoints_are_refused(tiny_clip_dir, tmp_path):
    pickled = tmp_path / 'pickled'
    shutil.copytree(tiny_clip_dir, pickled)
    (pickled / 'model.safetensors').rename(pickled / 'pytorch_model.bin')
    with pytest.raises(ModelLoadError, match='safetensors only'):
        load_clip(str(pickled), device='cpu')


def test_incomplete_directory_names_the_missing_files(tiny_clip_dir, tmp_path):
    partial = tmp_path / 'partial'
    shutil.copytree(tiny_clip_dir, partial)
    (partial / 'tokenizer.json').unlink()
    (partial / 'config.json').unlink()
    with pytest.raises(ModelLoadError, match='missing config.json, tokenizer.json'):
        load_clip(str(partial), device='cpu')


def test_device_and_precision_choices():
    assert resolve_device('auto') == (torch.device('cuda') if torch.cuda.is_available()
                                      else CPU)
    assert resolve_device('CPU') == CPU
    assert resolve_precision('auto', CPU) == torch.float32
    assert resolve_precision('auto', torch.device('cuda')) == torch.float16
    assert resolve_precision('bf16', CPU) == torch.bfloat16  # allowed, never the default
    with pytest.raises(ModelLoadError, match='fp16 needs a CUDA device'):
        resolve_precision('fp16', CPU)
    with pytest.raises(ModelLoadError, match='precision must be one of'):
        resolve_precision('int8', CPU)
    with pytest.raises(ModelLoadError, match='device must be'):
        resolve_device('tpu')


@pytest.mark.skipif(torch.cuda.is_available(), reason='checks the error without CUDA')
def test_cuda_without_cuda_is_a_clear_error(tiny_clip_dir):
    with pytest.raises(ModelLoadError, match="'cuda:0' requested but CUDA is not available"):
        load_clip(str(tiny_clip_dir), device='cuda:0')


@pytest.mark.parametrize('height,width', [(480, 640), (300, 200), (17, 33), (224, 224)])
def test_device_preprocessing_matches_clip_image_processor(height, width):
    pytest.importorskip('PIL')
    from transformers import CLIPImageProcessor
    image = smooth_image(height, width)
    reference = CLIPImageProcessor(size={'shortest_edge': 224},
                                   crop_size={'height': 224, 'width': 224})(
        images=image, return_tensors='pt')['pixel_values']
    ours = classification_input(frame_to_device(image, CPU), 224, 224,
                                Normalizer(CLIP_MEAN, CLIP_STD, CPU))
    assert ours.shape == reference.shape == (1, 3, 224, 224)
    difference = (ours - reference).abs()
    # Tolerance: 2 grey levels after normalization (2 / 255 / std ≈ 0.03); torch's
    # antialiased bicubic and PIL's differ by at most one level in practice.
    assert difference.max() <= 2 / 255 / min(CLIP_STD)
    assert difference.mean() < 0.005


def test_frame_checks():
    with pytest.raises(ValueError, match='empty frame'):
        frame_to_device(np.zeros((0, 5, 3), np.uint8), CPU)
    with pytest.raises(ValueError, match='H×W×3 uint8'):
        frame_to_device(np.zeros((4, 5), np.uint8), CPU)


@pytest.mark.parametrize('damage', ['truncated', 'empty', 'random bytes'])
@pytest.mark.parametrize('file,reason', [('model.safetensors', 'could not load CLIP'),
                                         ('box_regressor.safetensors',
                                          'not a readable safetensors file')])
def test_damaged_weight_files_are_one_clear_load_error(tiny_clip_dir, tmp_path, damage, file,
                                                       reason):
    model = tmp_path / 'model'
    shutil.copytree(tiny_clip_dir, model)
    weights = (tiny_clip_dir / 'model.safetensors').read_bytes()
    (model / file).write_bytes({'truncated': weights[:len(weights) // 2], 'empty': b'',
                                'random bytes': bytes(range(256)) * 16}[damage])
    with pytest.raises(ModelLoadError, match=reason) as raised:
        load_clip(str(model), device='cpu')
    assert '\n' not in str(raised.value)


def test_a_box_regressor_beside_pickle_weights_does_not_hide_the_pickle(tiny_clip_dir, tmp_path):
    pickled = tmp_path / 'pickled'
    shutil.copytree(tiny_clip_dir, pickled)
    (pickled / 'model.safetensors').rename(pickled / 'pytorch_model.bin')
    (pickled / 'box_regressor.safetensors').write_bytes(b'\0' * 64)
    with pytest.raises(ModelLoadError, match='safetensors only'):
        load_clip(str(pickled), device='cpu')
