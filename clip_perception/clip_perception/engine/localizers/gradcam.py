"""
gradcam (Grad-CAM): a map per label from the gradient of its whole-frame score.

A map is scaled to its peak; a label counts when the whole frame's probability of
it (against labels and background prompts) reaches score_threshold, and each
region where its map reaches heatmap_threshold of the peak is a detection,
scored by that probability times the region's peak.
"""
from clip_perception.engine.heatmaps.maps import gradcam_detections
from clip_perception.engine.localizers.heatmap import HeatmapLocalizer, MapPass
import numpy as np


class GradCamLocalizer(HeatmapLocalizer):
    """Grad-CAM of the labels' logits (encoder.gradcam): a ViT's last block, a CNN's last stage."""

    name = 'gradcam'
    encoder_method = 'gradcam'

    def encode(self, encoder, pixels, classes) -> MapPass:
        logits, cams = encoder.gradcam(pixels, classes.matrix, classes.num_labels)
        evidence = logits.softmax(dim=-1)[:, :classes.num_labels].cpu().numpy()
        cams = cams.cpu().numpy()
        return MapPass(cams / np.maximum(cams.max(axis=(2, 3), keepdims=True), 1e-12), evidence)

    def select(self, maps, row, labels, height, width, patch, threshold, settings):
        return gradcam_detections(maps.maps[row], maps.evidence[row], labels, height, width,
                                  patch, threshold, settings.heatmap_threshold,
                                  settings.nms_iou, settings.max_detections)
