"""
From scored windows to detections: thresholds, grouping, merging, NMS.

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
from clip_perception.engine.boxes import (box_areas, Detection, pairwise_intersections,
                                          pairwise_iou, pairwise_overlap_of_smaller, per_label_nms)
import numpy as np

# How a group of windows becomes one box (see select_detections).
REFINEMENTS = ('merge', 'intersect', 'none')
# 'intersect' takes this quantile of the group's window edges (robust to a few outliers).
INTERSECT_QUANTILE = 0.8
# Two same-label windows sharing this fraction of the smaller one show one object.
CONTAINMENT = 0.5
# Windows framing a box at least this well (IoU) make up its score.
SUPPORT_IOU = 0.5
# label_evidence pools the support of each label's this many most probable windows.
EVIDENCE_WINDOWS = 16


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


def select_detections(boxes: np.ndarray, logits: np.ndarray, labels: tuple[str, ...],
                      score_threshold: float, nms_iou: float, max_detections: int,
                      refinement: str = 'merge') -> list[Detection]:
    """
    Scored boxes to detections, best first.

    boxes [N, 4] xyxy: the windows, or where the box regressor moved them;
    logits [N, K] over the labels, then the background prompts (the probabilities
    are their softmax). A box whose best class is a label scoring >= `score_threshold`
    is a candidate; candidates are grouped per label into objects (see the module
    doc), and each group gives one box. A group's best box has the highest label
    log-probability (computed from the logits, so it still orders boxes whose
    probability rounds to 1; ties go to the larger box).
    `refinement` (one of REFINEMENTS): 'none' reports that box; 'merge' the
    probability-weighted mean of it and the group's boxes that overlap it by IoU >=
    nms_iou without lying inside it, which corrects for the grid's spacing;
    'intersect' the (robust) intersection of the group's boxes: right for a model
    that names an object only when all of it is in the window, since the object then
    lies inside them all. Each object is scored by its support (see the module
    doc); per-label NMS, best score first, runs last.
    """
    num_labels = len(labels)
    # softmax over labels and background prompts, kept in log form for the ranking
    log_probabilities = _log_softmax(logits)
    probabilities = np.exp(log_probabilities)
    best = probabilities.argmax(axis=1)
    best_score = probabilities[np.arange(len(best)), best]
    candidate = np.flatnonzero((best < num_labels) & (best_score >= score_threshold))
    if candidate.size == 0:
        return []
    candidates = boxes[candidate].astype(np.float64)
    label_ids = best[candidate]
    scores = best_score[candidate]
    # Rank by the label's log-probability: exact where the probability rounds to 1,
    # and it weighs the label against every competing prompt (background included).
    # Ties (a uniform object filling several windows) go to the larger box.
    areas = box_areas(candidates)
    ranks = log_probabilities[candidate, label_ids] + 1e-6 * areas / areas.max()

    same_label = label_ids[:, None] == label_ids[None, :]
    iou = pairwise_iou(candidates, candidates)
    one_object = (iou >= nms_iou) | (pairwise_overlap_of_smaller(candidates) >= CONTAINMENT)
    group = connected_groups(same_label & one_object)
    # The best-ranked box of each group.
    order = np.lexsort((-ranks, group))
    leaders = order[np.r_[True, group[order][1:] != group[order][:-1]]]
    out_boxes = candidates[leaders]
    if refinement == 'merge':
        # Boxes inside the leader add nothing: it already scored at least as high.
        inside = pairwise_intersections(candidates[leaders], candidates) >= areas[None, :] - 1e-6
        members = ((group[leaders][:, None] == group[None, :]) & (iou[leaders] >= nms_iou)
                   & (~inside | (np.arange(len(candidates))[None, :] == leaders[:, None])))
        weights = members * scores[None, :]
        out_boxes = weights @ candidates / weights.sum(axis=1, keepdims=True)
    elif refinement == 'intersect':
        out_boxes = np.stack([_robust_intersection(candidates[group == group[leader]], box)
                              for box, leader in zip(out_boxes, leaders)])
    support = _support(out_boxes, candidate[leaders], boxes, probabilities, label_ids[leaders])
    # Equal support (a lone box, say) falls back to the leaders' ranking.
    order = np.lexsort((-ranks[leaders], -support))
    keep = per_label_nms(out_boxes[order], -np.arange(len(order), dtype=np.float64),
                         label_ids[leaders][order], nms_iou)
    keep = order[np.sort(keep)][:max_detections]
    return [Detection(labels[label_ids[leaders[k]]], float(support[k]),
                      tuple(map(float, out_boxes[k]))) for k in keep]


def label_evidence(boxes: np.ndarray, logits: np.ndarray, num_labels: int) -> np.ndarray:
    """
    Image-level score of each label from the windows: [L] in [0, 1].

    A label's score is the best support (see the module doc) that any of its
    EVIDENCE_WINDOWS most probable windows gets: the mean probability of the label
    over the windows framing that window (IoU >= SUPPORT_IOU), probabilities taken
    against every label and background prompt. It is what a detection of the label
    at its likeliest place would score, before the threshold; a label seen nowhere
    scores near 0, and a single window fooled by a texture scores less than an
    object that every nearby window sees.
    """
    if len(boxes) == 0:
        return np.zeros(num_labels)
    probabilities = np.exp(_log_softmax(logits))[:, :num_labels]
    k = min(EVIDENCE_WINDOWS, len(boxes))
    top = np.argpartition(-probabilities, k - 1, axis=0)[:k]  # [k, L] window indices
    boxes = boxes.astype(np.float64)
    # IoU of each distinct top window once, then one [L, N] slice per rank: memory grows
    # with the windows, not with windows × labels × ranks (300 labels took 126 MB)
    distinct, index = np.unique(top, return_inverse=True)
    iou = pairwise_iou(boxes[distinct], boxes)  # [U, N]
    index = index.reshape(top.shape)
    by_label = probabilities.T  # [L, N]
    labels = np.arange(num_labels)
    pooled = np.empty((k, num_labels))
    for rank in range(k):
        framing = iou[index[rank]] >= SUPPORT_IOU  # [L, N]
        framing[labels, top[rank]] = True
        pooled[rank] = (framing * by_label).sum(axis=1) / framing.sum(axis=1)
    return pooled.max(axis=0)


def _log_softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax of [N, K] logits (over labels and background prompts)."""
    shifted = logits - logits.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _support(objects: np.ndarray, leaders: np.ndarray, boxes: np.ndarray,
             probabilities: np.ndarray, label_ids: np.ndarray) -> np.ndarray:
    """
    Score objects by the boxes that frame them.

    [M] mean probability of each object's label over the scored boxes framing it
    (IoU >= SUPPORT_IOU); the object's own best box (index in `leaders`) always counts.
    """
    framing = pairwise_iou(objects, boxes.astype(np.float64)) >= SUPPORT_IOU
    framing[np.arange(len(objects)), leaders] = True
    label_probabilities = probabilities[:, label_ids].T  # [M, N]
    return (framing * label_probabilities).sum(axis=1) / framing.sum(axis=1)


def _robust_intersection(members: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Edges at INTERSECT_QUANTILE of the members' (x0, y0 high; x1, y1 low)."""
    low = np.quantile(members[:, :2], INTERSECT_QUANTILE, axis=0)
    high = np.quantile(members[:, 2:], 1.0 - INTERSECT_QUANTILE, axis=0)
    if (high <= low).any():
        return fallback
    return np.concatenate([low, high])
