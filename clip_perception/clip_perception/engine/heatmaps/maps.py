"""
Per-label heatmaps of a frame, and the boxes they show.

All boxes are xyxy float pixels of the original frame. A map is [rows, cols],
one value per patch of the encoder's input, which covers the whole frame
(resized, aspect ratio kept up to one patch).

dense (MaskCLIP): the patch embeddings (encoder.encode_patches) against every
    label and background prompt; a label's map is its softmax probability per
    patch. A detection is a connected region where the probability reaches
    score_threshold, scored by its mean probability.
gradcam (Grad-CAM): a map per label (encoder.gradcam), scaled to its peak; a
    label counts when the whole frame's probability of it (against labels and
    background prompts) reaches score_threshold, and each region where its map
    reaches heatmap_threshold of the peak is a detection, scored by that
    probability times the region's peak.
"""
from clip_perception.engine.boxes import Detection, per_label_nms
import cv2
import numpy as np


def map_input_size(height: int, width: int, short_side: int, patch: int) -> tuple[int, int]:
    """
    Size of the encoder input for a height×width frame.

    Its shorter side is `short_side` (a whole number of patches, at least one) and
    the aspect ratio is kept to the nearest patch.
    """
    short_patches = max(1, round(short_side / patch))
    if height <= width:
        return short_patches * patch, max(1, round(short_patches * width / height)) * patch
    return max(1, round(short_patches * height / width)) * patch, short_patches * patch


def regions(heat: np.ndarray, threshold: float, height: int, width: int, patch: int):
    """
    Find the connected regions of one map at or above `threshold`.

    heat [rows, cols] -> per region (xyxy box in frame pixels, mean, peak). The map is
    upsampled (bilinear, patch centres aligned) to `patch` pixels per cell first, so
    a region's edge falls between patch centres, and scaled to the frame. The mean is
    over the region's upsampled pixels, the peak over the cells whose centre it holds
    (interpolation would shave an isolated peak).
    """
    rows, cols = heat.shape
    fine = cv2.resize(heat.astype(np.float32), (cols * patch, rows * patch),
                      interpolation=cv2.INTER_LINEAR)
    mask = (fine >= threshold).astype(np.uint8)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    scale = np.array([width / fine.shape[1], height / fine.shape[0]] * 2)
    centres = labels[patch // 2::patch, patch // 2::patch]  # [rows, cols]
    out = []
    for index in range(1, count):
        x, y, w, h, _ = stats[index]
        values = fine[labels == index]
        held = heat[centres == index]
        peak = float(held.max()) if held.size else float(values.max())
        box = np.array([x, y, x + w, y + h], np.float64) * scale
        out.append((tuple(map(float, box)), float(values.mean()), peak))
    return out


def dense_detections(probabilities: np.ndarray, labels: tuple[str, ...], height: int,
                     width: int, patch: int, score_threshold: float, nms_iou: float,
                     max_detections: int) -> list[Detection]:
    """[L, rows, cols] label probabilities per patch -> detections, best first."""
    found = [(label_id, box, mean)
             for label_id, heat in enumerate(probabilities)
             for box, mean, _ in regions(heat, score_threshold, height, width, patch)]
    return _best(found, labels, nms_iou, max_detections)


def gradcam_detections(cams: np.ndarray, label_probabilities: np.ndarray,
                       labels: tuple[str, ...], height: int, width: int, patch: int,
                       score_threshold: float, heatmap_threshold: float, nms_iou: float,
                       max_detections: int) -> list[Detection]:
    """[L, rows, cols] Grad-CAM maps (>= 0) and [L] frame probabilities -> detections."""
    found = []
    for label_id, (cam, probability) in enumerate(zip(cams, label_probabilities)):
        peak = float(cam.max())
        if probability < score_threshold or peak <= 0.0:
            continue
        for box, _, region_peak in regions(cam / peak, heatmap_threshold, height, width,
                                           patch):
            found.append((label_id, box, float(probability) * region_peak))
    return _best(found, labels, nms_iou, max_detections)


def _best(found, labels, nms_iou: float, max_detections: int) -> list[Detection]:
    """Per-label NMS over (label id, box, score) and the best max_detections, best first."""
    if not found:
        return []
    label_ids = np.array([f[0] for f in found])
    boxes = np.array([f[1] for f in found], np.float64)
    scores = np.array([f[2] for f in found], np.float64)
    keep = per_label_nms(boxes, scores, label_ids, nms_iou)
    keep = keep[np.argsort(-scores[keep], kind='stable')][:max_detections]
    return [Detection(labels[label_ids[k]], float(scores[k]), tuple(map(float, boxes[k])))
            for k in keep]
