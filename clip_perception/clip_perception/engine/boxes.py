"""
Detections and box geometry: intersections, IoU, per-label NMS.

All boxes are xyxy float pixels of the original frame (x0, y0 inclusive; x1,
y1 exclusive).
"""
from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class Detection:
    """
    One located object.

    `box` is (x0, y0, x1, y1) in pixels of the input image; `score` is the label's softmax
    probability against all labels and background prompts, averaged over the windows
    framing the box (see sliding_windows.grouping).
    """

    label: str
    score: float
    box: tuple[float, float, float, float]
    track_id: str = ''  # the object's identity across frames (tracking.Tracker); '' untracked

    @property
    def center_size(self) -> tuple[float, float, float, float]:
        """(center x, center y, width, height) in pixels, as vision_msgs BoundingBox2D."""
        return center_size(self.box)


def center_size(box) -> tuple[float, float, float, float]:
    """Turn an xyxy box into (center x, center y, width, height), same units."""
    x0, y0, x1, y1 = box
    return (x0 + x1) / 2.0, (y0 + y1) / 2.0, x1 - x0, y1 - y0


def pairwise_intersections(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, 4] and [M, 4] xyxy -> [N, M] intersection areas (integers for integer boxes)."""
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    return np.clip(bottom_right - top_left, 0, None).prod(axis=2)


def box_areas(boxes: np.ndarray) -> np.ndarray:
    """[N, 4] xyxy -> [N] areas."""
    return (boxes[:, 2:] - boxes[:, :2]).prod(axis=1)


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, 4] and [M, 4] xyxy -> [N, M] intersection over union."""
    inter = pairwise_intersections(a, b)
    return inter / np.maximum(box_areas(a)[:, None] + box_areas(b)[None, :] - inter, 1e-9)


def pairwise_overlap_of_smaller(boxes: np.ndarray) -> np.ndarray:
    """[N, 4] -> [N, N] intersection over the smaller box's area."""
    areas = box_areas(boxes)
    smaller = np.minimum(areas[:, None], areas[None, :])
    return pairwise_intersections(boxes, boxes) / np.maximum(smaller, 1e-9)


def per_label_nms(boxes: np.ndarray, ranks: np.ndarray, label_ids: np.ndarray,
                  iou_threshold: float) -> np.ndarray:
    """Run greedy NMS within each label (OpenCV): the indices kept, best rank first."""
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    keep = cv2.dnn.NMSBoxesBatched(
        xywh.tolist(), ranks.astype(np.float32).tolist(), label_ids.astype(np.int32).tolist(),
        float(ranks.min()) - 1.0, float(iou_threshold))
    return np.asarray(keep, dtype=np.int64).reshape(-1)


def uncertain_only(candidates: list[Detection], confident: list[Detection],
                   nms_iou: float) -> list[Detection]:
    """
    Keep the candidates that add an object to `confident`.

    `candidates` were selected at a lower threshold (more windows merge into larger
    groups there); one overlapping a confident detection of its label by more than
    `nms_iou` is that object again and is dropped. Best first, as given.
    """
    kept = []
    for found in candidates:
        same = [c.box for c in confident if c.label == found.label]
        if same and pairwise_iou(np.array([found.box], np.float64),
                                 np.array(same, np.float64)).max() > nms_iou:
            continue
        kept.append(found)
    return kept
