"""
Sliding windows: every window of a grid classified, the confident ones grouped.

    frame -> window grid -> crop batch -> one batched encoder pass -> logits
    against the labels and background prompts (windows moved by the model's box
    regressor, when it has one) -> thresholds, merging, NMS -> detections
"""
from typing import NamedTuple, Sequence

from clip_perception.engine.localizers.base import (confident_and_uncertain, DetectionContext,
                                                    FrameResult, Localizer, ranked)
from clip_perception.engine.memory import Regions
from clip_perception.engine.preprocess import classification_input, frame_to_device
from clip_perception.engine.scoring import class_logits, label_scores
from clip_perception.engine.sliding_windows.crops import crop_batch
from clip_perception.engine.sliding_windows.grid import window_count
from clip_perception.engine.sliding_windows.grouping import label_evidence, select_detections
import numpy as np
import torch


class ScoredWindows(NamedTuple):
    """
    One frame's encoder pass.

    whole_image: label scores [L] of the whole image; windows: [N, 4] int xyxy; embeddings:
    [N, D] their L2-normalized image embeddings (on the encoder's device); logits: [N, K]
    over the labels then the background prompts; boxes: [N, 4] float xyxy, the windows
    moved by the box regressor (the windows themselves without one, or with box_regression
    off).
    """

    whole_image: np.ndarray
    windows: np.ndarray
    embeddings: torch.Tensor
    logits: np.ndarray
    boxes: np.ndarray


class WindowsLocalizer(Localizer):
    """Windows of the settings' grid (WindowSpec), each classified by the encoder."""

    name = 'windows'
    keeps_regions = True
    uses_box_regressor = True

    def check_frame(self, settings, height, width, patch, model_side) -> None:
        count = window_count(height, width, settings.windows)
        if count > settings.max_windows:
            raise ValueError(f'a {width}×{height} frame would need {count} windows with these '
                             f'window settings, more than max_windows={settings.max_windows}')

    def detect(self, context: DetectionContext, frames, bgr, keep) -> list[FrameResult]:
        s = context.settings
        labels = context.class_embeddings().labels
        results = []
        for scored, kept in zip(self.score_windows(context, frames, bgr), keep):
            image_scores = scored.whole_image
            if s.classification == 'windows':
                image_scores = label_evidence(scored.boxes, scored.logits, len(labels))
            detections, uncertain = confident_and_uncertain(
                lambda threshold, scored=scored: select_detections(
                    scored.boxes, scored.logits, labels, threshold, s.nms_iou,
                    s.max_detections, s.box_refinement), s)
            regions = Regions(scored.boxes, scored.embeddings.float().cpu()) if kept else None
            results.append(FrameResult(ranked(labels, image_scores), detections,
                                       len(scored.windows), regions=regions,
                                       uncertain=uncertain))
        return results

    def score_windows(self, context: DetectionContext, frames: Sequence[np.ndarray],
                      bgr: Sequence[bool],
                      windows: Sequence[np.ndarray] | None = None) -> list[ScoredWindows]:
        """
        Score the windows of several frames in one batched encoder pass.

        Per frame its ScoredWindows. `windows`: per frame the [N, 4] int xyxy windows
        to score instead of the grid of the settings.
        """
        encoder, settings = context.encoder, context.settings
        image, classes = encoder.settings, context.class_embeddings()
        if windows is None:
            windows = [settings.window_grid(frame.shape[0], frame.shape[1]) for frame in frames]
        inputs, grids = [], []
        for frame, is_bgr, grid in zip(frames, bgr, windows, strict=True):
            tensor = frame_to_device(frame, encoder.device, bgr=is_bgr)
            inputs.append(classification_input(tensor, image.resize, image.crop,
                                               context.normalize))
            inputs.append(crop_batch(tensor, grid, image.crop, context.normalize))
            grids.append(grid)
        embeddings = context.encode_images(torch.cat(inputs))
        logits = class_logits(embeddings, classes.matrix, encoder.logit_scale)
        whole_image = label_scores(logits, classes.num_labels).cpu().numpy()
        logits = logits.cpu().numpy()
        regress = settings.box_regression and encoder.box_regressor is not None
        out, start = [], 0
        for frame, grid in zip(frames, grids):
            rows = slice(start + 1, start + 1 + len(grid))
            boxes = grid.astype(np.float64)
            if regress:
                boxes = encoder.box_regressor.regress(grid, embeddings[rows],
                                                      frame.shape[0], frame.shape[1])
            out.append(ScoredWindows(whole_image[start], grid, embeddings[rows], logits[rows],
                                     boxes))
            start += 1 + len(grid)
        return out
