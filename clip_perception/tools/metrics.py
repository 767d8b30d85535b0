"""
Detection metrics: matching detections to ground truth, average precision.

AP at an IoU threshold with all-point interpolation, as PASCAL VOC 2010+ and
COCO's per-threshold AP.
"""
from collections import Counter, defaultdict

from clip_perception.engine.boxes import pairwise_iou
import numpy as np


def average_precision(scores: np.ndarray, matched: np.ndarray, num_truths: int) -> float:
    """AP from detections' scores and whether each matched a ground truth."""
    if num_truths == 0:
        return float('nan')
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-np.asarray(scores), kind='stable')
    hits = np.asarray(matched, bool)[order]
    tp, fp = np.cumsum(hits), np.cumsum(~hits)
    recall = tp / num_truths
    precision = tp / np.maximum(tp + fp, 1e-9)
    # precision envelope, then the area under the step curve
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    recall_steps = np.diff(np.concatenate([[0.0], recall]))
    return float(np.sum(recall_steps * envelope))


def match_detections(detections, truths, iou_threshold: float = 0.5) -> np.ndarray:
    """
    Which detections of one image find a ground truth: [len(detections)] bool.

    detections: (label, score, xyxy); truths: (label, xyxy). Best score first, each
    detection takes the not yet taken truth of its label that it overlaps most, when
    their IoU is at least `iou_threshold`; a truth is found at most once, so other
    detections of it count as false positives.
    """
    hits = np.zeros(len(detections), bool)
    taken = np.zeros(len(truths), bool)
    truth_labels = np.array([label for label, _ in truths], object)
    truth_boxes = np.array([box for _, box in truths], float).reshape(-1, 4)
    for index in _best_first(detections):
        label, _, box = detections[index]
        free = (truth_labels == label) & ~taken
        if not free.any():
            continue
        iou = np.where(free, pairwise_iou(np.array([box], float), truth_boxes)[0], -1.0)
        best = int(iou.argmax())
        if iou[best] >= iou_threshold:
            taken[best] = hits[index] = True
    return hits


def detection_ap(predictions, truths, iou_threshold: float = 0.5) -> dict[str, float]:
    """
    Per-label AP.

    predictions[i]: (label, score, xyxy) of image i; truths[i]: (label, xyxy). Detections
    are matched to the truths by match_detections.
    """
    scores, hits = defaultdict(list), defaultdict(list)
    num_truths = Counter(label for image in truths for label, _ in image)
    for image_predictions, image_truths in zip(predictions, truths, strict=True):
        matched = match_detections(image_predictions, image_truths, iou_threshold)
        for index in _best_first(image_predictions):
            label, score, _ = image_predictions[index]
            scores[label].append(score)
            hits[label].append(matched[index])
    return {label: average_precision(np.array(scores[label]), np.array(hits[label], bool),
                                     num_truths[label])
            for label in sorted(set(scores) | set(num_truths))}


def _best_first(detections) -> list[int]:
    """Order (label, score, box) detections by descending score, ties as given."""
    return sorted(range(len(detections)), key=lambda i: -detections[i][1])


def mean_ap(per_label: dict[str, float]) -> float:
    """Mean over labels that have ground truth."""
    values = [v for v in per_label.values() if not np.isnan(v)]
    return float(np.mean(values)) if values else float('nan')
