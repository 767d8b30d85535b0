"""From scored windows to detections: thresholds, grouping, merging, NMS.

All boxes are xyxy float pixels of the original frame.

Sliding windows see one object many times: windows inside it score as high as
the window around it, and shifted windows nearly as high. Plain IoU-NMS misses
such pairs when their sizes differ, so candidates of one label are grouped
when they overlap by IoU >= nms_iou or share at least CONTAINMENT of the
smaller window's area; each group is one object.

An object's score pools the evidence around its box: the label's mean
probability over every window (candidate or not) that frames the box as well as
AP@0.5 asks (IoU >= SUPPORT_IOU). A tool is seen by its shifted and rescaled
windows alike; a part of one tool that a single window happens to name as
another tool is not, so it scores low.
"""
from dataclasses import dataclass

import cv2
import numpy as np

REFINEMENTS = ('none', 'merge', 'intersect')
# 'intersect' takes this quantile of the group's window edges (robust to a few outliers).
INTERSECT_QUANTILE = 0.8
# Two same-label windows sharing this fraction of the smaller one show one object.
CONTAINMENT = 0.5
# Windows framing a box at least this well (IoU) make up its score.
SUPPORT_IOU = 0.5


@dataclass(frozen=True)
class Detection:
    """One located object. `box` is (x0, y0, x1, y1) in pixels of the input image;
    `score` is the label's softmax probability against all labels and background
    prompts, averaged over the windows framing the box (see the module doc)."""

    label: str
    score: float
    box: tuple[float, float, float, float]

    @property
    def center_size(self) -> tuple[float, float, float, float]:
        """(center x, center y, width, height) in pixels, as vision_msgs BoundingBox2D."""
        x0, y0, x1, y1 = self.box
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


def connected_groups(adjacent: np.ndarray) -> np.ndarray:
    """[N, N] symmetric bool -> [N] group ids (the smallest member index)."""
    n = len(adjacent)
    group = np.arange(n)
    while True:  # each pass spreads the smallest id one hop; a few passes suffice
        spread = np.where(adjacent, group[None, :], n).min(axis=1)
        updated = np.minimum(group, spread)
        if np.array_equal(updated, group):
            return group
        group = updated


def per_label_nms(boxes: np.ndarray, ranks: np.ndarray, label_ids: np.ndarray,
                  iou_threshold: float) -> np.ndarray:
    """Indices kept by greedy NMS within each label (OpenCV), best rank first."""
    xywh = np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], axis=1)
    keep = cv2.dnn.NMSBoxesBatched(
        xywh.tolist(), ranks.astype(np.float32).tolist(), label_ids.astype(np.int32).tolist(),
        float(ranks.min()) - 1.0, float(iou_threshold))
    return np.asarray(keep, dtype=np.int64).reshape(-1)


def select_detections(windows: np.ndarray, logits: np.ndarray, labels: tuple[str, ...],
                      score_threshold: float, nms_iou: float, max_detections: int,
                      refinement: str = 'merge') -> list[Detection]:
    """Windows whose best class is a label scoring >= `score_threshold` become candidates,
    grouped per label into objects (see the module doc); each group gives one box.

    windows [N, 4] xyxy; logits [N, K] over labels then background prompts (the
    probabilities are their softmax). A group's best window has the highest label
    log-probability (computed from the logits, so it still orders windows whose
    probability rounds to 1; ties go to the larger window).
    refinement 'none' reports that window; 'merge' the probability-weighted mean
    of it and the group's windows that overlap it by IoU >= nms_iou without lying
    inside it, which corrects for the grid's spacing; 'intersect' the (robust)
    intersection of the group's windows: right for a model that names an object
    only when all of it is in the window, since the object then lies inside them
    all. Each object is scored by its support (see the module doc); per-label NMS,
    best score first, runs last.
    """
    num_labels = len(labels)
    # softmax over labels and background prompts, kept in log form for the ranking
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_probabilities = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    probabilities = np.exp(log_probabilities)
    best = probabilities.argmax(axis=1)
    best_score = probabilities[np.arange(len(best)), best]
    candidate = np.flatnonzero((best < num_labels) & (best_score >= score_threshold))
    if candidate.size == 0:
        return []
    if refinement not in REFINEMENTS:
        raise ValueError(f'box refinement must be one of {REFINEMENTS}, not {refinement!r}')
    boxes = windows[candidate].astype(np.float64)
    label_ids = best[candidate]
    scores = best_score[candidate]
    # Rank by the label's log-probability: exact where the probability rounds to 1,
    # and it weighs the label against every competing prompt (background included).
    # Ties (a uniform object filling several windows) go to the larger window.
    areas = box_areas(boxes)
    ranks = log_probabilities[candidate, label_ids] + 1e-6 * areas / areas.max()

    same_label = label_ids[:, None] == label_ids[None, :]
    iou = pairwise_iou(boxes, boxes)
    group = connected_groups(same_label & ((iou >= nms_iou) |
                                           (pairwise_overlap_of_smaller(boxes) >= CONTAINMENT)))
    # The best-ranked window of each group.
    order = np.lexsort((-ranks, group))
    leaders = order[np.r_[True, group[order][1:] != group[order][:-1]]]
    out_boxes = boxes[leaders]
    if refinement == 'merge':
        # Windows inside the leader add nothing: it already scored at least as high.
        inside = pairwise_intersections(boxes[leaders], boxes) >= areas[None, :] - 1e-6
        members = ((group[leaders][:, None] == group[None, :]) & (iou[leaders] >= nms_iou)
                   & (~inside | (np.arange(len(boxes))[None, :] == leaders[:, None])))
        weights = members * scores[None, :]
        out_boxes = weights @ boxes / weights.sum(axis=1, keepdims=True)
    elif refinement == 'intersect':
        out_boxes = np.stack([_robust_intersection(boxes[group == group[leader]], out_boxes[i])
                              for i, leader in enumerate(leaders)])
    support = _support(out_boxes, candidate[leaders], windows, probabilities, label_ids[leaders])
    # Equal support (a lone window, say) falls back to the leaders' ranking.
    order = np.lexsort((-ranks[leaders], -support))
    keep = per_label_nms(out_boxes[order], -np.arange(len(order), dtype=np.float64),
                         label_ids[leaders][order], nms_iou)
    keep = order[np.sort(keep)][:max_detections]
    return [Detection(labels[label_ids[leaders[k]]], float(support[k]),
                      tuple(map(float, out_boxes[k]))) for k in keep]


def _support(boxes: np.ndarray, leader_windows: np.ndarray, windows: np.ndarray,
             probabilities: np.ndarray, label_ids: np.ndarray) -> np.ndarray:
    """[M] mean probability of each box's label over the windows framing it (IoU >=
    SUPPORT_IOU); the box's own best window always counts."""
    framing = pairwise_iou(boxes, windows.astype(np.float64)) >= SUPPORT_IOU
    framing[np.arange(len(boxes)), leader_windows] = True
    label_probabilities = probabilities[:, label_ids].T  # [M, N]
    return (framing * label_probabilities).sum(axis=1) / framing.sum(axis=1)


def _robust_intersection(members: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Edges at INTERSECT_QUANTILE of the members' (x0, y0 high; x1, y1 low)."""
    low = np.quantile(members[:, :2], INTERSECT_QUANTILE, axis=0)
    high = np.quantile(members[:, 2:], 1.0 - INTERSECT_QUANTILE, axis=0)
    if (high <= low).any():
        return fallback
    return np.concatenate([low, high])
