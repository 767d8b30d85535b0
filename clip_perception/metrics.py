"""Detection metrics: average precision at an IoU threshold (all-point interpolation,
as PASCAL VOC 2010+ and COCO's per-threshold AP)."""
from collections import defaultdict

import numpy as np

from clip_perception.boxes import pairwise_iou


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


def detection_ap(predictions, truths, iou_threshold: float = 0.5) -> dict[str, float]:
    """Per-label AP. predictions[i]: (label, score, xyxy) of image i; truths[i]: (label, xyxy).

    Each ground truth is matched by at most one detection (the highest-scoring one
    above the IoU threshold); other detections of it are false positives."""
    per_label = defaultdict(lambda: ([], []))
    num_truths = defaultdict(int)
    for image_predictions, image_truths in zip(predictions, truths, strict=True):
        for label, _ in image_truths:
            num_truths[label] += 1
        for label in {p[0] for p in image_predictions} | {t[0] for t in image_truths}:
            preds = sorted((p for p in image_predictions if p[0] == label),
                           key=lambda p: -p[1])
            gts = np.array([t[1] for t in image_truths if t[0] == label], float).reshape(-1, 4)
            taken = np.zeros(len(gts), bool)
            for _, score, box in preds:
                hit = False
                if len(gts):
                    iou = pairwise_iou(np.array([box], float), gts)[0]
                    iou[taken] = -1
                    best = int(iou.argmax())
                    if iou[best] >= iou_threshold:
                        taken[best] = hit = True
                per_label[label][0].append(score)
                per_label[label][1].append(hit)
    return {label: average_precision(np.array(per_label[label][0]),
                                     np.array(per_label[label][1]), num_truths[label])
            for label in sorted(set(per_label) | set(num_truths))}


def mean_ap(per_label: dict[str, float]) -> float:
    """Mean over labels that have ground truth."""
    values = [v for v in per_label.values() if not np.isnan(v)]
    return float(np.mean(values)) if values else float('nan')
