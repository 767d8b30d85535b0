"""
Frames to normalized CLIP input, on the model's device.

The frame goes to the device once as uint8; every resize, crop and
normalization after that runs there. Equivalent to CLIPImageProcessor
(shortest side to `resize`, bicubic, center crop, mean/std), which a test
checks against.
"""
import numpy as np
import torch
import torch.nn.functional as F


def frame_to_device(frame: np.ndarray, device: torch.device, bgr: bool = False) -> torch.Tensor:
    """H×W×3 uint8 (RGB, or BGR with `bgr`) -> [3, H, W] uint8 RGB tensor on `device`."""
    if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
        raise ValueError(f'expected an H×W×3 uint8 frame, got {frame.dtype} {frame.shape}')
    if frame.shape[0] == 0 or frame.shape[1] == 0:
        raise ValueError(f'empty frame {frame.shape[1]}×{frame.shape[0]}')
    tensor = torch.from_numpy(np.ascontiguousarray(frame)).to(device, non_blocking=True)
    tensor = tensor.permute(2, 0, 1)
    return tensor.flip(0) if bgr else tensor


def resize_bicubic(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """
    [C, H, W] or [N, C, H, W] -> float32 [.., height, width] in 0..255.

    Antialiased like PIL when shrinking, rounded to integers like PIL's uint8 output.
    """
    batch = image if image.dim() == 4 else image[None]
    resized = F.interpolate(batch.float(), size=(height, width), mode='bicubic',
                            align_corners=False, antialias=True)
    resized = resized.clamp_(0, 255).round_()
    return resized if image.dim() == 4 else resized[0]


def shortest_side_size(height: int, width: int, shortest: int) -> tuple[int, int]:
    """Output size when the shortest side becomes `shortest` (transformers' rule)."""
    if height <= width:
        return shortest, int(shortest * width / height)
    return int(shortest * height / width), shortest


def center_crop_box(height: int, width: int, crop: int) -> tuple[int, int]:
    """Top-left corner of a crop×crop center crop (transformers' rule)."""
    return (height - crop) // 2, (width - crop) // 2


class Normalizer:
    """0..255 pixels -> (x/255 - mean) / std, with mean/std kept on the device."""

    def __init__(self, mean, std, device: torch.device):
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255.0
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1) * 255.0

    def __call__(self, pixels: torch.Tensor) -> torch.Tensor:
        return (pixels - self.mean) / self.std


def classification_input(frame: torch.Tensor, resize: int, crop: int,
                         normalize: Normalizer) -> torch.Tensor:
    """[3, H, W] uint8 -> [1, 3, crop, crop]: CLIP's own preprocessing of a whole image."""
    _, height, width = frame.shape
    new_h, new_w = shortest_side_size(height, width, resize)
    resized = resize_bicubic(frame, new_h, new_w)
    if new_h < crop or new_w < crop:  # transformers pads; only a degenerate resize < crop
        resized = F.pad(resized, (0, max(0, crop - new_w), 0, max(0, crop - new_h)))
        new_h, new_w = resized.shape[-2:]
    top, left = center_crop_box(new_h, new_w, crop)
    return normalize(resized[None, :, top:top + crop, left:left + crop])
