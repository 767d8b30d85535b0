"""
Load a CLIP model (Hugging Face id or local directory) onto a device.

Weights are read from safetensors only, remote code is never trusted, and a
model that is not available locally fails with a message naming what is
missing. A Hugging Face id is looked up in the local cache first; the hub is
asked only when HF_HUB_OFFLINE is not set.
"""
import json
import logging
import os
from pathlib import Path

from clip_perception.engine.encoder import (CLIP_MEAN, CLIP_STD, DualTowerEncoder,
                                            image_text_encoder, ImageSettings)
from clip_perception.engine.sliding_windows.box_regression import (load_box_regressor,
                                                                   REGRESSOR_FILE)
import torch

log = logging.getLogger(__name__)

DEFAULT_MODEL = 'openai/clip-vit-base-patch32'
PRECISIONS = ('auto', 'fp32', 'fp16', 'bf16')
_DTYPES = {'fp32': torch.float32, 'fp16': torch.float16, 'bf16': torch.bfloat16}
_SNAPSHOT_PATTERNS = ['*.json', '*.safetensors', '*.txt']


class ModelLoadError(RuntimeError):
    """The model, its device or its precision cannot be used; the message says why."""


def resolve_device(device: str) -> torch.device:
    """'auto' (CUDA when available) | 'cpu' | 'cuda' | 'cuda:N'."""
    name = device.strip().lower()
    if name == 'auto':
        return torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    if name == 'cpu':
        return torch.device('cpu')
    if name == 'cuda' or name.startswith('cuda:'):
        if not torch.cuda.is_available():
            raise ModelLoadError(f'device {device!r} requested but CUDA is not available '
                                 f'(torch {torch.__version__}, built for CUDA: '
                                 f'{torch.version.cuda or "no"})')
        index = int(name.split(':', 1)[1]) if ':' in name else 0
        if index >= torch.cuda.device_count():
            raise ModelLoadError(f'device {device!r} requested but only '
                                 f'{torch.cuda.device_count()} CUDA device(s) exist')
        return torch.device('cuda', index)
    raise ModelLoadError(f'device must be auto, cpu, cuda or cuda:N, not {device!r}')


def resolve_precision(precision: str, device: torch.device) -> torch.dtype:
    """'auto' is fp16 on CUDA and fp32 on CPU (bf16 on CPU is much slower there)."""
    name = precision.strip().lower()
    if name not in PRECISIONS:
        raise ModelLoadError(f'precision must be one of {", ".join(PRECISIONS)}, '
                             f'not {precision!r}')
    if name == 'auto':
        return torch.float16 if device.type == 'cuda' else torch.float32
    if name == 'fp16' and device.type == 'cpu':
        raise ModelLoadError('precision fp16 needs a CUDA device; use fp32 on the CPU')
    if name == 'bf16' and device.type == 'cpu':
        log.warning('bf16 on the CPU is usually several times slower than fp32')
    return _DTYPES[name]


def resolve_model_directory(model: str) -> Path:
    """Find a model: a local directory as is, a hub id through the local cache (or the hub)."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.is_absolute() or model.startswith(('.', '~')):
        raise ModelLoadError(f'model directory {model!r} does not exist')
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError
    try:
        return Path(snapshot_download(model, allow_patterns=_SNAPSHOT_PATTERNS,
                                      local_files_only=True))
    except LocalEntryNotFoundError:
        pass
    if os.environ.get('HF_HUB_OFFLINE', '0') not in ('0', '', 'false', 'False'):
        raise ModelLoadError(
            f'model {model!r} is neither a local directory nor in the Hugging Face cache, '
            'and HF_HUB_OFFLINE is set: download it on a connected machine '
            f'(huggingface-cli download {model}) or give a local directory')
    try:
        return Path(snapshot_download(model, allow_patterns=_SNAPSHOT_PATTERNS))
    except Exception as error:  # network, unknown repository, permissions
        raise ModelLoadError(f'model {model!r} is not in the Hugging Face cache and could not '
                             f'be downloaded ({type(error).__name__}: '
                             f'{first_line(error)[:200]})') from None


def _check_model_files(directory: Path) -> None:
    missing = [name for name in ('config.json',) if not (directory / name).is_file()]
    # the box regressor (its own safetensors file) is no model weights
    weights = [p for p in directory.glob('*.safetensors') if p.name != REGRESSOR_FILE]
    if not weights:
        others = sorted(p.name for p in directory.iterdir()
                        if p.suffix in ('.bin', '.pt', '.pth', '.ckpt', '.h5', '.msgpack'))
        if others:
            raise ModelLoadError(
                f'{directory} has weights only in {", ".join(others)}: clip_perception loads '
                'safetensors only (pickle checkpoints can run code); convert them with '
                'CLIPModel.from_pretrained(...).save_pretrained(dir, safe_serialization=True) '
                'on a machine you trust')
        missing.append('model.safetensors')
    if not any((directory / name).is_file() for name in ('tokenizer.json', 'vocab.json')):
        missing.append('tokenizer.json (or vocab.json + merges.txt)')
    if missing:
        raise ModelLoadError(f'{directory} is not a complete CLIP model directory: '
                             f'missing {", ".join(missing)}')


def read_image_settings(directory: Path, vision_image_size: int) -> ImageSettings:
    """
    Read a model's image preprocessing settings.

    From preprocessor_config.json (released checkpoints) or processor_config.json
    (transformers 5 writes the image processor nested), else CLIP's defaults.
    """
    config = {}
    if (directory / 'preprocessor_config.json').is_file():
        config = json.loads((directory / 'preprocessor_config.json').read_text())
    elif (directory / 'processor_config.json').is_file():
        config = json.loads((directory / 'processor_config.json').read_text()).get(
            'image_processor', {})

    def edge(value, default):
        if isinstance(value, dict):
            return int(value.get('shortest_edge') or value.get('height') or default)
        return int(value) if value else default

    resize = edge(config.get('size'), vision_image_size)
    crop = edge(config.get('crop_size'), resize)
    mean = tuple(config.get('image_mean') or CLIP_MEAN)
    std = tuple(config.get('image_std') or CLIP_STD)
    return ImageSettings(resize=resize, crop=crop, mean=mean, std=std)


def load_clip(model: str = DEFAULT_MODEL, device: str = 'auto',
              precision: str = 'auto') -> DualTowerEncoder:
    """
    Load `model` (hub id or directory) and return an encoder on `device`.

    A CLIPModel, or a VisionTextDualEncoderModel with a ConvNeXt image tower (the
    convolutional demo model).
    """
    torch_device = resolve_device(device)
    dtype = resolve_precision(precision, torch_device)
    directory = resolve_model_directory(model)
    _check_model_files(directory)
    kind = model_type(directory)
    if kind in ('owlvit', 'owlv2'):
        raise ModelLoadError(f'{model} is an OWL detection model: run it with localizer owlvit')
    from transformers import AutoTokenizer, CLIPModel, VisionTextDualEncoderModel
    from transformers.utils import logging as transformers_logging
    transformers_logging.disable_progress_bar()  # a node's log is no terminal
    architecture = CLIPModel
    if kind == 'vision-text-dual-encoder':
        vision = _config(directory).get('vision_config', {}).get('model_type')
        if vision != 'convnext':
            raise ModelLoadError(f'{model} is a dual encoder with a {vision} image tower; '
                                 'clip_perception runs CLIP models and dual encoders with a '
                                 'ConvNeXt image tower')
        architecture = VisionTextDualEncoderModel
    try:
        clip = architecture.from_pretrained(directory, use_safetensors=True,
                                            trust_remote_code=False, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=False)
    except Exception as error:  # truncated or foreign files fail in many ways; all mean this
        raise ModelLoadError(f'could not load CLIP from {directory}: '
                             f'{type(error).__name__}: {first_line(error)}') from error
    clip.to(torch_device).eval()
    settings = read_image_settings(directory, clip.config.vision_config.image_size)
    try:
        box_regressor = load_box_regressor(directory, clip.config.projection_dim)
    except ValueError as error:
        raise ModelLoadError(str(error)) from error
    log.info('loaded %s on %s (%s)%s', model, torch_device, str(dtype).removeprefix('torch.'),
             ', with a box regressor' if box_regressor else '')
    return image_text_encoder(clip, tokenizer, settings, name=model,
                              box_regressor=box_regressor and box_regressor.to(torch_device))


def _config(directory: Path) -> dict:
    try:
        return json.loads((directory / 'config.json').read_text())
    except (OSError, ValueError):
        return {}


def projection_dim(directory: Path) -> int:
    """Read the size of the embeddings a CLIP-style model directory makes (0 if unknown)."""
    return int(_config(directory).get('projection_dim', 0) or 0)


def model_type(directory: Path) -> str:
    """Read the model type config.json names ('clip', 'owlvit', 'owlv2', …; '' if none)."""
    return str(_config(directory).get('model_type', ''))


def load_owl(model: str, device: str = 'auto', precision: str = 'auto'):
    """Load an OWL-ViT or OWLv2 detection model (hub id or directory) as an OwlEncoder."""
    from clip_perception.engine.owl import OWL_MODEL_TYPES, OwlEncoder
    torch_device = resolve_device(device)
    dtype = resolve_precision(precision, torch_device)
    directory = resolve_model_directory(model)
    _check_model_files(directory)
    kind = model_type(directory)
    if kind not in OWL_MODEL_TYPES:
        raise ModelLoadError(f'{model} is a {kind or "unknown"} model, not OWL-ViT or OWLv2 '
                             '(localizer owlvit needs one, e.g. google/owlv2-base-patch16)')
    from transformers import AutoTokenizer, Owlv2ForObjectDetection, OwlViTForObjectDetection
    from transformers.utils import logging as transformers_logging
    transformers_logging.disable_progress_bar()
    architecture = OwlViTForObjectDetection if kind == 'owlvit' else Owlv2ForObjectDetection
    try:
        detector = architecture.from_pretrained(directory, use_safetensors=True,
                                                trust_remote_code=False, dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=False)
    except Exception as error:
        raise ModelLoadError(f'could not load {kind} from {directory}: '
                             f'{type(error).__name__}: {first_line(error)}') from error
    detector.to(torch_device).eval()
    settings = read_image_settings(directory, detector.config.vision_config.image_size)
    log.info('loaded %s (%s) on %s (%s)', model, kind, torch_device,
             str(dtype).removeprefix('torch.'))
    return OwlEncoder(detector, tokenizer, settings, kind, name=model)


def load_encoder(model: str, device: str = 'auto', precision: str = 'auto',
                 localizer: str = 'windows'):
    """Load what `localizer` runs on (its model family: OWL-ViT/OWLv2, or CLIP)."""
    from clip_perception.engine.localizers import localizer as registered
    if registered(localizer).model_family == 'owl':
        return load_owl(model, device, precision)
    return load_clip(model, device, precision)


def first_line(error: Exception) -> str:
    """Return an exception's message, first line only (a log line stays one line)."""
    text = str(error).strip()
    return text.splitlines()[0] if text else ''
