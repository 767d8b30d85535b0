"""
Box regression on CLIP window embeddings (R-CNN's bounding-box regression).

A window that holds a tool rarely frames it exactly: the grid's spacing and
sizes leave most best windows at IoU 0.5–0.7 with the tool. CLIP's embedding
of the window still tells where in the window the tool lies, so a map from
the embedding to R-CNN's box deltas

    dx = (x_tool - x_window) / w_window    dw = log(w_tool / w_window)
    dy = (y_tool - y_window) / h_window    dh = log(h_tool / h_window)

(x, y the centres) moves each window onto its tool. R-CNN fits a linear map;
here a one-hidden-layer MLP (GELU) on the embedding does better (on the demo
model's validation scenes AP@0.5 0.59 without regression, 0.66-0.68 linear,
0.69-0.71 with the MLP). It is fitted per model on windows of annotated scenes
(`python -m clip_perception.fit_boxes`, clip_perception.tools.fit_boxes) and
shipped in the model directory as REGRESSOR_FILE; it is class-agnostic, so it
does not depend on the label list.
"""
from dataclasses import dataclass
import json
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.torch import save_file
import torch

REGRESSOR_FILE = 'box_regressor.safetensors'
_FORMAT = 'clip_perception.box_regressor/1'
# exp(dw) is clamped as in Faster R-CNN, so a wild prediction cannot blow a box up.
_MAX_LOG_SCALE = float(np.log(1000.0 / 16.0))


def box_deltas(windows: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """[N, 4] xyxy windows and the [N, 4] xyxy boxes they should become -> [N, 4] deltas."""
    w_size = windows[:, 2:] - windows[:, :2]
    b_size = boxes[:, 2:] - boxes[:, :2]
    shift = (boxes[:, :2] + b_size / 2 - windows[:, :2] - w_size / 2) / w_size
    return np.concatenate([shift, np.log(b_size / w_size)], axis=1)


def apply_deltas(windows: torch.Tensor, deltas: torch.Tensor) -> torch.Tensor:
    """Inverse of box_deltas: [N, 4] xyxy windows moved by [N, 4] deltas."""
    size = windows[:, 2:] - windows[:, :2]
    centre = windows[:, :2] + size / 2 + deltas[:, :2] * size
    new_size = size * deltas[:, 2:].clamp(max=_MAX_LOG_SCALE).exp()
    return torch.cat([centre - new_size / 2, centre + new_size / 2], dim=1)


@dataclass(frozen=True)
class BoxRegressor:
    """
    The fitted MLP from window embeddings to box deltas.

    deltas = out(gelu(hidden(embedding))). layers: 'hidden.weight' [H, D],
    'hidden.bias' [H], 'out.weight' [4, H], 'out.bias' [4]. info: how it was fitted.
    """

    layers: dict[str, torch.Tensor]
    info: dict

    @property
    def embedding_dim(self) -> int:
        return self.layers['hidden.weight'].shape[1]

    def to(self, device: torch.device) -> 'BoxRegressor':
        return BoxRegressor({name: tensor.to(device=device, dtype=torch.float32)
                             for name, tensor in self.layers.items()}, self.info)

    def deltas(self, embeddings: torch.Tensor) -> torch.Tensor:
        """[N, D] image embeddings -> [N, 4] deltas."""
        layers = self.layers
        hidden = torch.nn.functional.gelu(torch.nn.functional.linear(
            embeddings.float(), layers['hidden.weight'], layers['hidden.bias']))
        return torch.nn.functional.linear(hidden, layers['out.weight'], layers['out.bias'])

    def regress(self, windows: np.ndarray, embeddings: torch.Tensor, height: int,
                width: int) -> np.ndarray:
        """
        Move windows onto their objects.

        [N, 4] xyxy windows of a height×width frame and their embeddings -> [N, 4]
        float64 boxes, kept inside the frame and at least one pixel wide and high.
        """
        boxes = apply_deltas(torch.as_tensor(windows, dtype=torch.float32,
                                             device=embeddings.device),
                             self.deltas(embeddings)).cpu().double().numpy()
        limits = np.array([width, height, width, height], dtype=np.float64)
        boxes = np.clip(boxes, 0.0, limits)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], np.minimum(boxes[:, :2] + 1.0, limits[2:]))
        boxes[:, :2] = np.minimum(boxes[:, :2], boxes[:, 2:] - 1.0)
        return boxes

    def save(self, directory: Path) -> Path:
        path = Path(directory) / REGRESSOR_FILE
        save_file({name: tensor.detach().cpu().float().contiguous()
                   for name, tensor in self.layers.items()}, str(path),
                  metadata={'format': _FORMAT, 'info': json.dumps(self.info)})
        return path


_LAYERS = ('hidden.weight', 'hidden.bias', 'out.weight', 'out.bias')


def load_box_regressor(directory: Path, embedding_dim: int) -> BoxRegressor | None:
    """
    Load the regressor shipped in a model directory (None when it has none).

    ValueError when the file is not one or does not fit the model's embeddings.
    """
    path = Path(directory) / REGRESSOR_FILE
    if not path.is_file():
        return None
    try:
        with safe_open(str(path), framework='pt') as file:
            metadata = file.metadata() or {}
            keys = set(file.keys())
            if metadata.get('format') == _FORMAT and keys == set(_LAYERS):
                layers = {name: file.get_tensor(name).float() for name in _LAYERS}
    except Exception as error:  # truncated, empty or not safetensors at all
        raise ValueError(f'{path} is not a readable safetensors file: '
                         f'{type(error).__name__}: {error}') from error
    if metadata.get('format') != _FORMAT or keys != set(_LAYERS):
        raise ValueError(f'{path} is not a clip_perception box regressor')
    hidden = layers['hidden.weight'].shape[0]
    if (layers['hidden.weight'].dim() != 2 or layers['hidden.bias'].shape != (hidden,)
            or layers['out.weight'].shape != (4, hidden) or layers['out.bias'].shape != (4,)):
        raise ValueError(f'{path} is not a clip_perception box regressor (layer shapes)')
    regressor = BoxRegressor(layers, json.loads(metadata.get('info', '{}')))
    if regressor.embedding_dim != embedding_dim:
        raise ValueError(f'{path} maps {regressor.embedding_dim}-d embeddings, but the model '
                         f'embeds in {embedding_dim} dimensions: refit it for this model '
                         '(python -m clip_perception.fit_boxes)')
    return regressor
