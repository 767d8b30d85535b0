"""From scored windows to detections: thresholds, per-label NMS, merging.

All boxes are xyxy float pixels of the original frame.
"""
from dataclasses import dataclass

import cv2
import numpy as np

REFINEMENTS = ('none', 'merge')


@dataclass(frozen=True)
class Detection:
    """One located object. `box` is (x0, y0, x1, y1) in pixels of the input image;
    `score` is the label's softmax probability against all labels and background
    prompts in the window that was kept."""

    label: str
    score: float
    box: tuple[float, float, float, float]

    @property
    def center_size(self) -> tuple[float, float, float, float]:
        """(center x, center y, width, height) in pixels, as vision_msgs BoundingBox2D."""
        x0, y0, x1, y1 = self.box
        return (x0 + x1) / 2.0, (y0 + y1) / 2.0, x1 - x0, y1 - y0


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, 4] and [M, 4] xyxy -> [N, M] intersection over union."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_a = (a[:, 2:] - a[:, :2]).prod(axis=1)
    area_b = (b[:, 2:] - b[:, :2]).prod(axis=1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def select_detections(windows: np.ndarray, logits: np.ndarray, probabilities: np.ndarray,
                      labels: tuple[str, ...], score_threshold: float, nms_iou: float,
                      max_detections: int, refinement: str = 'merge') -> list[Detection]:
    """Windows whose best class is a label scoring >= `score_threshold` become candidates;
    per-label NMS keeps the best of overlapping ones.

    windows [N, 4] xyxy; logits and probabilities [N, K] over labels then background
    prompts. NMS ranks by the label's logit, not its probability: the probability
    saturates near 1 for many windows around one object, the logit still tells the
    better-placed window. With refinement 'merge' each kept box becomes the
    probability-weighted mean of the same-label candidates it suppressed.
    """
    num_labels = len(labels)
    best = probabilities.argmax(axis=1)
    best_score = probabilities[np.arange(len(best)), best]
    candidate = np.flatnonzero((best < num_labels) & (best_score >= score_threshold))
    if candidate.size == 0:
        return []
    boxes = windows[candidate].astype(np.float64)
    label_ids = best[candidate]
    scores = best_score[candidate]
    ranks = logits[candidate, label_ids]
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    keep = np.asarray(cv2.dnn.NMSBoxesBatched(
        xywh.tolist(), ranks.astype(np.float32).tolist(), label_ids.astype(np.int32).tolist(),
        float(ranks.min()) - 1.0, float(nms_iou)), dtype=np.int64).reshape(-1)
    keep = keep[np.argsort(-scores[keep], kind='stable')][:max_detections]
    kept_boxes = boxes[keep]
    if refinement == 'merge':
        same_label = label_ids[keep][:, None] == label_ids[None, :]
        members = same_label & (pairwise_iou(kept_boxes, boxes) >= nms_iou)
        weights = members * scores[None, :]
        kept_boxes = weights @ boxes / weights.sum(axis=1, keepdims=True)
    elif refinement != 'none':
        raise ValueError(f'box refinement must be one of {REFINEMENTS}, not {refinement!r}')
    return [Detection(labels[label_ids[k]], float(scores[k]), tuple(map(float, box)))
            for k, box in zip(keep, kept_boxes)]
