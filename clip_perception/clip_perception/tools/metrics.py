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
    return _match(detections, truths, iou_threshold)[0]


def _match(detections, truths, iou_threshold):
    """match_detections, also returning which truths were found: ([D] bool, [T] bool)."""
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
    return hits, taken


def frame_outcome(detections, truths, iou_threshold: float = 0.5) -> dict[str, int]:
    """
    Count what one frame's detections did with its ground truth.

    detections: (label, score, xyxy); truths: (label, xyxy). 'found': truths matched
    by match_detections (right label, IoU >= `iou_threshold`); 'wrong_label': other
    truths that a detection left unmatched frames as well under another label (each
    such detection counts once); 'missed': the remaining truths; 'false': the
    detections that neither found a truth nor named one wrongly.
    """
    hits, taken = _match(detections, truths, iou_threshold)
    left = np.array([box for (_, _, box), hit in zip(detections, hits) if not hit],
                    float).reshape(-1, 4)
    used = np.zeros(len(left), bool)
    for index in np.flatnonzero(~taken):
        iou = np.where(used, -1.0, pairwise_iou(np.array([truths[index][1]], float), left)[0])
        if len(iou) and iou.max() >= iou_threshold:
            used[int(iou.argmax())] = True
    wrong = int(used.sum())
    return {'found': int(taken.sum()), 'wrong_label': wrong,
            'missed': len(truths) - int(taken.sum()) - wrong, 'false': len(left) - wrong}


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


COCO_THRESHOLDS = tuple(round(0.5 + 0.05 * i, 2) for i in range(10))  # 0.50, 0.55, …, 0.95


def detection_ap_50_95(predictions, truths) -> dict[str, float]:
    """Per-label AP averaged over the IoU thresholds COCO_THRESHOLDS (COCO's AP)."""
    per_threshold = [detection_ap(predictions, truths, t) for t in COCO_THRESHOLDS]
    return {label: float(np.mean([ap[label] for ap in per_threshold]))
            for label in per_threshold[0]}


def mean_ap(per_label: dict[str, float]) -> float:
    """Mean over labels that have ground truth."""
    values = [v for v in per_label.values() if not np.isnan(v)]
    return float(np.mean(values)) if values else float('nan')


def tracking_metrics(sequences, min_iou: float = 0.5) -> dict:
    """
    CLEAR MOT and identity metrics (motmetrics) over several sequences.

    sequences: per sequence, per frame a pair (truth, tracked), each a list of
    (object id, label, xyxy box). A tracked box matches a truth of its label at
    IoU >= min_iou. Returns mota, idf1, id_switches, and the counts behind them.
    The distances are computed here: motmetrics 1.4's own iou_matrix calls
    numpy's removed asfarray.
    """
    import motmetrics
    accumulators = []
    for frames in sequences:
        accumulator = motmetrics.MOTAccumulator(auto_id=True)
        for truth, tracked in frames:
            distances = np.full((len(truth), len(tracked)), np.nan)
            if truth and tracked:
                iou = pairwise_iou(np.array([t[2] for t in truth], dtype=np.float64),
                                   np.array([h[2] for h in tracked], dtype=np.float64))
                same = np.array([[t[1] == h[1] for h in tracked] for t in truth])
                distances = np.where((iou >= min_iou) & same, 1.0 - iou, np.nan)
            accumulator.update([t[0] for t in truth], [h[0] for h in tracked], distances)
        accumulators.append(accumulator)
    host = motmetrics.metrics.create()
    summary = host.compute_many(
        accumulators, metrics=['mota', 'idf1', 'num_switches', 'num_objects',
                               'num_false_positives', 'num_misses'],
        names=[str(i) for i in range(len(accumulators))], generate_overall=True)
    overall = summary.loc['OVERALL']
    return {'mota': float(overall['mota']), 'idf1': float(overall['idf1']),
            'id_switches': int(overall['num_switches']),
            'objects': int(overall['num_objects']),
            'false_positives': int(overall['num_false_positives']),
            'misses': int(overall['num_misses'])}
