"""
dense (MaskCLIP): the patch embeddings against every label and background prompt.

A label's map is its softmax probability per patch; a detection is a connected
region where it reaches score_threshold, scored by its mean probability. The
patch cells are the regions a memory keeps.
"""
from clip_perception.engine.heatmaps.maps import dense_detections
from clip_perception.engine.localizers.heatmap import HeatmapLocalizer, MapPass
from clip_perception.engine.memory import Regions
from clip_perception.engine.scoring import class_logits
import numpy as np
import torch


def patch_regions(patches: torch.Tensor, height: int, width: int) -> Regions:
    """[rows, cols, D] patch embeddings over a height×width frame -> their cells as Regions."""
    rows, cols = patches.shape[:2]
    xs, ys = np.linspace(0.0, width, cols + 1), np.linspace(0.0, height, rows + 1)
    x0, y0 = np.meshgrid(xs[:-1], ys[:-1])
    x1, y1 = np.meshgrid(xs[1:], ys[1:])
    boxes = np.stack([x0, y0, x1, y1], axis=-1).reshape(-1, 4)
    return Regions(boxes, patches.reshape(rows * cols, -1).float().cpu())


class DenseLocalizer(HeatmapLocalizer):
    """Patch embeddings in the joint space (encoder.encode_patches), classified per patch."""

    name = 'dense'
    encoder_method = 'encode_patches'
    keeps_regions = True

    def encode(self, encoder, pixels, classes) -> MapPass:
        patches = encoder.encode_patches(pixels)  # [n, rows, cols, D]
        logits = class_logits(patches, classes.matrix, encoder.logit_scale)
        maps = logits.softmax(dim=-1)[..., :classes.num_labels].permute(0, 3, 1, 2)
        maps = maps.cpu().numpy()
        return MapPass(maps, maps.max(axis=(2, 3)), patches)

    def select(self, maps, row, labels, height, width, patch, threshold, settings):
        return dense_detections(maps.maps[row], labels, height, width, patch, threshold,
                                settings.nms_iou, settings.max_detections)

    def regions(self, maps, row, height, width):
        return patch_regions(maps.patches[row], height, width)
