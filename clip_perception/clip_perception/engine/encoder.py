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


class PatchEncoder(ImageTextEncoder, Protocol):
    """An encoder that also gives patch-level maps (the dense and gradcam localizers)."""

    patch_size: int

    def encode_patches(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] normalized pixels -> [N, H/patch, W/patch, D] L2-normalized float32."""

    def gradcam(self, pixel_values: torch.Tensor, class_matrix: torch.Tensor,
                num_maps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Grad-CAM of the first `num_maps` class rows.

        [N, 3, H, W] normalized pixels and [K, D] class embeddings -> the image's logits
        [N, K] and per mapped class a map [N, num_maps, H/patch, W/patch] >= 0, float32.
        """


def projected(output) -> torch.Tensor:
    # transformers 5 returns BaseModelOutputWithPooling (projection in
    # pooler_output); 4.x returned the projected tensor itself.
    return output if isinstance(output, torch.Tensor) else output.pooler_output


class TransformersEncoder:
    """
    A transformers model with CLIP's text tower, and its tokenizer, on one device.

    What CLIP and the OWL detectors share: the text side and the model's release.
    """

    box_regressor: 'BoxRegressor | None' = None

    def __init__(self, model, tokenizer, settings: ImageSettings, name: str = ''):
        self.model = model
        self.tokenizer = tokenizer
        self.settings = settings
        self.name = name
        parameter = next(model.parameters())
        self.device = parameter.device
        self.dtype = parameter.dtype
        self.max_text_tokens = int(model.config.text_config.max_position_embeddings)

    @torch.inference_mode()
    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        tokens = self.tokenizer(list(texts), padding=True, truncation=True,
                                max_length=self.max_text_tokens, return_tensors='pt')
        tokens = {k: v.to(self.device) for k, v in tokens.items()
                  if k in ('input_ids', 'attention_mask')}
        # base_model: the CLIPModel itself, or the OwlViTModel/Owlv2Model inside a detector
        features = projected(self.model.base_model.get_text_features(**tokens)).float()
        return torch.nn.functional.normalize(features, dim=-1)

    def release(self) -> None:
        """Drop the model so its (GPU) memory can be freed."""
        self.model = None
        if self.device.type == 'cuda':
            torch.cuda.empty_cache()


class DualTowerEncoder(TransformersEncoder):
    """
    An image-text model with CLIP's interface (get_image_features, logit_scale).

    With the box regressor fitted to its image embeddings, when the model directory
    has one.
    """

    def __init__(self, model, tokenizer, settings, name: str = '', box_regressor=None):
        super().__init__(model, tokenizer, settings, name)
        self.box_regressor = box_regressor
        # Like CLIP's training code: the temperature never exceeds 100.
        self.logit_scale = float(model.logit_scale.detach().float().exp().clamp(max=100.0))

    @torch.inference_mode()
    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        pixels = pixel_values.to(device=self.device, dtype=self.dtype)
        features = projected(self.model.get_image_features(pixel_values=pixels)).float()
        return torch.nn.functional.normalize(features, dim=-1)


def image_text_encoder(model, tokenizer, settings: ImageSettings, name: str = '',
                       box_regressor=None) -> DualTowerEncoder:
    """Wrap `model` in its encoder class: a CLIPModel's ViT, or a dual encoder's ConvNeXt."""
    kind = ConvNextEncoder if model.config.model_type == 'vision-text-dual-encoder' \
        else ClipEncoder
    return kind(model, tokenizer, settings, name, box_regressor)


class ConvNextEncoder(DualTowerEncoder):
    """
    A VisionTextDualEncoderModel with a ConvNeXt image tower.

    The windows localizer and Grad-CAM serve it; Grad-CAM in its original setting,
    the last convolutional stage's feature map. It has no patch embeddings in the
    joint space (the pooled features are projected, not each position), so the
    dense localizer does not serve it.
    """

    @property
    def patch_size(self) -> int:
        """Give the tower's stride: the stem's, halved by every later stage."""
        vision = self.model.config.vision_config
        return int(vision.patch_size) * 2 ** (len(vision.hidden_sizes) - 1)

    def gradcam(self, pixel_values: torch.Tensor, class_matrix: torch.Tensor,
                num_maps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Grad-CAM (Selvaraju et al., 2017) on the last stage's feature map; see PatchEncoder.

        Each class's weights are its logit's gradient averaged over the map; the map is
        ReLU(Σ weights · activations) per position.
        """
        convnext = self.model.vision_model
        with torch.inference_mode():
            hidden = convnext.embeddings(pixel_values.to(device=self.device, dtype=self.dtype))
            for stage in convnext.encoder.stages[:-1]:
                hidden = stage(hidden)
        with torch.enable_grad():
            entering = hidden.clone().requires_grad_(True)
            class_matrix = class_matrix.clone()
            activations = convnext.encoder.stages[-1](entering)  # [N, C, rows, cols]
            pooled = convnext.layernorm(activations.mean(dim=(-2, -1)))
            image = torch.nn.functional.normalize(
                self.model.visual_projection(pooled).float(), dim=-1)
            logits = self.logit_scale * image @ class_matrix.to(image.device).T  # [N, K]
            maps = []
            for column in range(num_maps):
                (gradient,) = torch.autograd.grad(logits[:, column].sum(), activations,
                                                  retain_graph=column + 1 < num_maps)
                weights = gradient.float().mean(dim=(-2, -1), keepdim=True)  # [N, C, 1, 1]
                maps.append((weights * activations.float()).sum(dim=1).relu())
        return logits.detach(), torch.stack(maps, dim=1).detach()


class ClipEncoder(DualTowerEncoder):
    """A transformers CLIPModel and its tokenizer, in eval mode on one device."""

    @property
    def patch_size(self) -> int:
        return int(self.model.config.vision_config.patch_size)

    def _last_block_input(self, pixels: torch.Tensor) -> torch.Tensor:
        """Return the vision tower's tokens [N, 1 + patches, C] as they enter its last block."""
        vision = self.model.vision_model
        # Position embeddings are interpolated for any input size (a frame, not a crop).
        hidden = vision.pre_layrnorm(vision.embeddings(
            pixels.to(device=self.device, dtype=self.dtype), interpolate_pos_encoding=True))
        for layer in vision.encoder.layers[:-1]:
            hidden = layer(hidden, None)
        return hidden

    def _grid(self, pixels: torch.Tensor) -> tuple[int, int]:
        return pixels.shape[-2] // self.patch_size, pixels.shape[-1] // self.patch_size

    @torch.inference_mode()
    def encode_patches(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """
        Patch embeddings in the joint space (MaskCLIP's value path).

        The last block's attention pools every patch into the class token, which is
        what CLIP was trained to embed; its value projection keeps each patch's own
        content. As MaskCLIP (Zhou et al., 2022), the last block's query-key attention is
        dropped and each patch token's value goes through the attention's output
        projection, the final layer norm and the visual projection; as ClearCLIP (Lan
        et al., 2024), without the last block's residual and MLP, which blur the maps.
        """
        vision = self.model.vision_model
        last = vision.encoder.layers[-1]
        tokens = last.layer_norm1(self._last_block_input(pixel_values))[:, 1:]
        values = last.self_attn.out_proj(last.self_attn.v_proj(tokens))
        features = self.model.visual_projection(vision.post_layernorm(values)).float()
        rows, cols = self._grid(pixel_values)
        return torch.nn.functional.normalize(features, dim=-1).unflatten(1, (rows, cols))

    def gradcam(self, pixel_values: torch.Tensor, class_matrix: torch.Tensor,
                num_maps: int) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Grad-CAM (Selvaraju et al., 2017) on the last vision block; see PatchEncoder.

        The activations are the patch tokens after the last block's first layer norm
        (the layer pytorch-grad-cam uses for ViTs: the last block's output patch tokens
        do not reach the class token); each class's weights are its logit's gradient
        averaged over the patches; the map is ReLU(Σ weights · activations) per patch.
        """
        vision = self.model.vision_model
        last = vision.encoder.layers[-1]
        with torch.inference_mode():
            entering = self._last_block_input(pixel_values)
        with torch.enable_grad():
            # inference tensors cannot take part in autograd: clone them out of it (the
            # activations are no leaf, so torch's FlopCounterMode can follow the backward)
            entering = entering.clone().requires_grad_(True)
            class_matrix = class_matrix.clone()
            activations = last.layer_norm1(entering)
            attended, _ = last.self_attn(activations, None)
            hidden = entering + attended
            hidden = hidden + last.mlp(last.layer_norm2(hidden))
            image = self.model.visual_projection(vision.post_layernorm(hidden[:, 0]))
            image = torch.nn.functional.normalize(image.float(), dim=-1)
            logits = self.logit_scale * image @ class_matrix.to(image.device).T  # [N, K]
            maps = []
            for column in range(num_maps):
                (gradient,) = torch.autograd.grad(logits[:, column].sum(), activations,
                                                  retain_graph=column + 1 < num_maps)
                weights = gradient[:, 1:].float().mean(dim=1, keepdim=True)  # [N, 1, C]
                maps.append((weights * activations[:, 1:].float()).sum(dim=-1).relu())
        rows, cols = self._grid(pixel_values)
        return logits.detach(), torch.stack(maps, dim=1).detach().unflatten(2, (rows, cols))
