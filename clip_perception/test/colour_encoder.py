"""
A deterministic stand-in for CLIP's two towers, for testing localization.

Image embedding: for each colour prototype, the fraction of the crop's pixels
nearest to it (encode_patches: the same per 8×8 patch, for the dense
localizer). Text embedding: which colour words the text names. So a crop
that is mostly red scores highest against "red", whatever CLIP would think.
It counts its calls so caching can be tested. Scenes for it are coloured
squares on grey (colour_scene), with the settings in COLOUR_SETTINGS.
"""
import time

from clip_perception.engine.detector import DetectorSettings
from clip_perception.engine.encoder import CLIP_MEAN, CLIP_STD, ImageSettings
import numpy as np
import torch

COLOURS = {
    'red': (220, 30, 30),
    'green': (30, 180, 30),
    'blue': (30, 30, 220),
    'yellow': (230, 220, 40),
    'grey': (128, 128, 128),
}
COLOUR_SETTINGS = DetectorSettings(
    labels=('red', 'green', 'blue'), prompt_templates=('a {} thing', 'a photo of {}'),
    background_prompts=('a grey background',), score_threshold=0.6, nms_iou=0.3)


def colour_scene(height=120, width=160, squares=()):
    """Draw a grey H×W×3 uint8 RGB frame with filled squares: (colour, x0, y0, x1, y1)."""
    frame = np.empty((height, width, 3), np.uint8)
    frame[:] = COLOURS['grey']
    for name, x0, y0, x1, y1 in squares:
        frame[y0:y1, x0:x1] = COLOURS[name]
    return frame


class ColourEncoder:

    def __init__(self, crop: int = 32, logit_scale: float = 100.0, delay_sec: float = 0.0,
                 poison: str | None = None):
        """
        Set up the double.

        delay_sec: simulated inference time per encoder call; `gate`, when set to an
        unset threading.Event, holds every call until it is set; `calls_started`
        counts the image-encoder calls entered (held ones included); a batch with a
        crop mostly of the `poison` colour raises RuntimeError (a frame that fails).
        """
        self.delay_sec = delay_sec
        self.gate = None
        self.calls_started = 0
        self.poison = poison
        self.device = torch.device('cpu')
        self.dtype = torch.float32
        self.settings = ImageSettings(resize=crop, crop=crop, mean=CLIP_MEAN, std=CLIP_STD)
        self.logit_scale = logit_scale
        self.box_regressor = None
        self.patch_size = 8  # encode_patches: one embedding per 8×8 pixels
        self._prototypes = torch.tensor(list(COLOURS.values()), dtype=torch.float32)
        self._mean = torch.tensor(CLIP_MEAN).view(1, 3, 1, 1)
        self._std = torch.tensor(CLIP_STD).view(1, 3, 1, 1)
        self.text_calls: list[list[str]] = []
        self.image_batches: list[int] = []

    def encode_images(self, pixel_values: torch.Tensor) -> torch.Tensor:
        self.calls_started += 1
        if self.gate is not None:
            self.gate.wait(timeout=30.0)
        if self.delay_sec:
            time.sleep(self.delay_sec)
        self.image_batches.append(len(pixel_values))
        fractions = self._nearest_colours(pixel_values).mean(dim=(1, 2))
        if self.poison and (fractions[:, list(COLOURS).index(self.poison)] > 0.5).any():
            raise RuntimeError(f'{self.poison} crops make this encoder fail')
        return torch.nn.functional.normalize(fractions, dim=-1)

    def _nearest_colours(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] normalized -> [N, H, W, colours] one-hot nearest prototype."""
        rgb = (pixel_values * self._std + self._mean) * 255.0
        pixels = rgb.permute(0, 2, 3, 1)  # [N, H, W, 3]
        nearest = torch.cdist(pixels.flatten(1, 2),
                              self._prototypes[None].expand(len(rgb), -1, -1)).argmin(-1)
        return torch.nn.functional.one_hot(nearest, len(COLOURS)).float().unflatten(
            1, pixels.shape[1:3])

    def encode_patches(self, pixel_values: torch.Tensor) -> torch.Tensor:
        """Per patch_size×patch_size patch its colour fractions: [N, H/p, W/p, colours]."""
        self.image_batches.append(len(pixel_values))
        one_hot = self._nearest_colours(pixel_values).permute(0, 3, 1, 2)
        fractions = torch.nn.functional.avg_pool2d(one_hot, self.patch_size)
        return torch.nn.functional.normalize(fractions.permute(0, 2, 3, 1), dim=-1)

    def encode_texts(self, texts: list[str]) -> torch.Tensor:
        self.text_calls.append(list(texts))
        rows = [[float(name in text.lower()) for name in COLOURS] for text in texts]
        return torch.nn.functional.normalize(torch.tensor(rows), dim=-1)
