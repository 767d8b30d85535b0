"""
What the heatmap localizers (dense, gradcam) share: one whole-frame pass, maps, regions.

    frame -> device tensor -> resized to map_size (aspect kept, whole patches)
      -> one encoder pass per input size -> per-label maps -> regions -> detections

Frames of one input size share a pass. See heatmaps/maps.py for how maps become
boxes.
"""
from typing import NamedTuple

from clip_perception.engine.heatmaps.maps import map_input_size
from clip_perception.engine.localizers.base import (confident_and_uncertain, DetectionContext,
                                                    FrameResult, Localizer, ranked)
from clip_perception.engine.preprocess import frame_to_device, resize_bicubic
import numpy as np
import torch


class MapPass(NamedTuple):
    """
    One encoder pass over frames of one input size.

    maps: [n, L, rows, cols] in 0..1; evidence: [n, L] each label's frame score;
    patches: [n, rows, cols, D] patch embeddings, when the localizer has them.
    """

    maps: np.ndarray
    evidence: np.ndarray
    patches: torch.Tensor | None = None


class HeatmapLocalizer(Localizer):
    """A localizer that maps each label over the whole frame in one encoder pass."""

    encoder_kind = 'an encoder with patch maps'
    draws_heatmaps = True

    def check_frame(self, settings, height, width, patch, model_side) -> None:
        """Refuse a frame whose encoder input has more than max_map_patches patches."""
        if not patch:
            return
        rows, cols = map_input_size(height, width, settings.map_size or model_side or patch,
                                    patch)
        count = (rows // patch) * (cols // patch)
        if count > settings.max_map_patches:
            raise ValueError(
                f'a {width}×{height} frame would need {count} patches at map_size '
                f'{settings.map_size or model_side}, more than max_map_patches='
                f'{settings.max_map_patches}')

    def encode(self, encoder, pixels: torch.Tensor, classes) -> MapPass:
        """Run the encoder on [n, 3, H, W] normalized pixels; return the maps."""
        raise NotImplementedError

    def select(self, maps: MapPass, row: int, labels, height: int, width: int, patch: int,
               threshold: float, settings) -> list:
        """Return frame `row`'s detections at `threshold`."""
        raise NotImplementedError

    def regions(self, maps: MapPass, row: int, height: int, width: int):
        """Return frame `row`'s regions for a memory (None: this localizer keeps none)."""
        return None

    def detect(self, context: DetectionContext, frames, bgr, keep) -> list[FrameResult]:
        s, encoder = context.settings, context.encoder
        classes = context.class_embeddings()
        short_side = s.map_size or encoder.settings.crop
        patch = encoder.patch_size
        inputs = [context.normalize(resize_bicubic(
            frame_to_device(frame, encoder.device, bgr=is_bgr),
            *map_input_size(frame.shape[0], frame.shape[1], short_side, patch))[None])
            for frame, is_bgr in zip(frames, bgr, strict=True)]
        by_size = {}
        for index, pixels in enumerate(inputs):
            by_size.setdefault(tuple(pixels.shape[-2:]), []).append(index)
        results = [None] * len(frames)
        for indices in by_size.values():
            context.raise_if_cancelled()
            maps = self.encode(encoder, torch.cat([inputs[i] for i in indices]), classes)
            for row, index in enumerate(indices):
                height, width = frames[index].shape[:2]
                detections, uncertain = confident_and_uncertain(
                    lambda threshold, row=row, height=height, width=width: self.select(
                        maps, row, classes.labels, height, width, patch, threshold, s), s)
                scores = maps.evidence[row]
                if s.classification == 'whole_image':
                    scores = context.whole_image_scores(frames[index], bgr[index])
                results[index] = FrameResult(
                    ranked(classes.labels, scores), detections, 1, maps.maps[row],
                    classes.labels, self.regions(maps, row, height, width) if keep[index]
                    else None, uncertain)
        return results
