"""
The two CLIP towers behind one small interface the detector relies on.

Anything with the same attributes and methods can stand in for it (the tests
use a deterministic colour encoder); the detector never touches transformers.
"""
from dataclasses import dataclass
from typing import Protocol, TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from clip_perception.engine.sliding_windows.box_regression import BoxRegressor

# CLIPImageProcessor's defaults, used when a model ships no processor file.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


@dataclass(frozen=True)
class ImageSettings:
    """What CLIPImageProcessor would do: shortest side to `resize`, center crop `crop`."""

    resize: int
    crop: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


class ImageTextEncoder(Protocol):
    device: torch.device
    dtype: torch.dtype
    settings: ImageSettings
    logit_scale: float
    box_regressor: 'BoxRegressor | None'

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[N, 3, crop, crop] normalized pixels -> [N, D] L2-normalized float32."""

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        """M strings -> [M, D] L2-normalized float32."""


def projected(output) -> torch.Tensor:
    # transformers 5 returns BaseModelOutputWithPooling (projection in
    # pooler_output); 4.x returned the projected tensor itself.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class ClipEncoder:
    """
    A transformers CLIPModel and its tokenizer, in eval mode on one device.

    With the box regressor fitted to its image embeddings, when the model directory
    has one.
    """

    def __init__(self, model, tokenizer, settings, name: str = '', box_regressor=None):
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self.name = name
        self.box_regressor = box_regressor
        parameter = next(model.parameters())
        self.device = parameter.device
        self.dtype = parameter.dtype
        # Like CLIP's training code: the temperature never exceeds 100.
        self.logit_scale = float(model.logit_scale.detach().float().exp().clamp(max=100.0))
        self.max_text_tokens = int(model.config.text_config.max_position_embeddings)

    @torch.inference_mode()
    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pixels = pixel_values.to(device=self.device, dtype=self.dtype)
        features = projected(self.model.get_image_features(pixel_values=pixels)).float()
        return torch.nn.functional.normalize(features, dim=-1)

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(texts), padding=True, truncation=True,
                                max_length=self.max_text_tokens, return_tensors='pt')
        tokens = {k: v.to(self.device) for k, v in tokens.items()
                  if k in ('input_ids', 'attention_mask')}
        features = projected(self.model.get_text_features(**tokens)).float()
        return torch.nn.functional.normalize(features, dim=-1)

    def release(self) -> None:
        """Drop the model so its (GPU) memory can be freed."""
        self.model = None
        if self.device.type == 'cuda':
            torch.cuda.empty_cache()
