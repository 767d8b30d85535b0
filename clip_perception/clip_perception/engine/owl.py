"""
OWL-ViT and OWLv2 (Minderer et al., 2022 and 2023) as the localizer `owlvit`.

A CLIP-based open-vocabulary detector head.
Every patch token of the vision tower predicts one box and, against each text
query, one logit; the queries (labels × prompt templates, ensembled like
CLIP's, see prompts.py) are embedded once per label change and reused every
frame: the class head gets the cached query embeddings, the text tower never
runs per frame.

Preprocessing runs on the device and follows the model's image processor:
OWL-ViT stretches the frame to its square input (bicubic); OWLv2 pads it to a
square at the bottom and right with zeros (black, before normalization), blurs
it with the processor's anti-aliasing Gaussian and resizes it (bilinear); both
match the processors within the tolerance test/test_owl.py states. Boxes come
back in pixels of the frame: OWLv2's are relative to the padded square.
"""
from dataclasses import dataclass

from clip_perception.engine.boxes import Detection, per_label_nms
from clip_perception.engine.encoder import ImageSettings, TransformersEncoder
from clip_perception.engine.preprocess import Normalizer, resize_bicubic
import numpy as np
import torch
import torch.nn.functional as F

OWL_MODEL_TYPES = ('owlvit', 'owlv2')


@dataclass(frozen=True)
class OwlOutput:
    """One frame through the detector head: per patch the query logits and a box."""

    logits: torch.Tensor  # [patches, queries]
    boxes: torch.Tensor  # [patches, 4] xyxy in pixels of the frame


class OwlEncoder(TransformersEncoder):
    """
    An OWL-ViT or OWLv2 detection model and its tokenizer, in eval mode on one device.

    Offers encode_texts like ClipEncoder (L2-normalized query embeddings for the
    text cache; the class head normalizes them too) and detect_frames instead of
    window encoding.
    """

    def __init__(self, model, tokenizer, settings: ImageSettings, kind: str, name: str = ''):
        if kind not in OWL_MODEL_TYPES:
            raise ValueError(f'kind must be one of {", ".join(OWL_MODEL_TYPES)}, not {kind!r}')
        super().__init__(model, tokenizer, settings, name)
        self.kind = kind
        self.logit_scale = 1.0  # the class head scales its own logits
        self._normalize = Normalizer(settings.mean, settings.std, self.device)

    def model_input(self, frame: torch.Tensor) -> torch.Tensor:
        """[3, H, W] uint8 on the device -> [1, 3, S, S] normalized, as the processor gives."""
        side = self.settings.crop
        if self.kind == 'owlvit':
            return self._normalize(resize_bicubic(frame, side, side)[None])
        _, height, width = frame.shape
        square = max(height, width)
        padded = F.pad(frame.float(), (0, square - width, 0, square - height))[None]
        if square > side:  # the processor's anti-aliasing: a Gaussian, sigma (factor - 1) / 2
            padded = gaussian_blur(padded, (square / side - 1.0) / 2.0)
        resized = F.interpolate(padded, size=(side, side), mode='bilinear', align_corners=False)
        return self._normalize(resized)

    def frame_scale(self, height: int, width: int) -> torch.Tensor:
        """Multiply normalized xyxy boxes by this [4] to get pixels of a height×width frame."""
        if self.kind == 'owlvit':
            return torch.tensor([width, height, width, height], dtype=torch.float32)
        square = float(max(height, width))
        return torch.full((4,), square)

    @torch.inference_mode()
    def predict(self, pixels: torch.Tensor,
                queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """
        Run the detector head with cached query embeddings.

        [N, 3, S, S] normalized pixels and [Q, D] queries -> per patch the query
        logits [N, P, Q] and a box [N, P, 4] (cx, cy, w, h in 0..1 of the model input).
        """
        feature_map, _ = self.model.image_embedder(pixel_values=pixels.to(self.dtype))
        batch, rows, cols, width = feature_map.shape
        features = feature_map.reshape(batch, rows * cols, width)
        query_embeds = queries.to(device=self.device, dtype=self.dtype)[None].expand(batch, -1, -1)
        logits, _ = self.model.class_predictor(features, query_embeds, None)
        return logits.float(), self.model.box_predictor(features, feature_map).float()

    def detect_frames(self, frames: list[torch.Tensor], queries: torch.Tensor) -> list[OwlOutput]:
        """[3, H, W] uint8 frames on the device and [Q, D] queries -> per frame its OwlOutput."""
        logits, boxes = self.predict(torch.cat([self.model_input(f) for f in frames]), queries)
        corners = torch.cat([boxes[..., :2] - boxes[..., 2:] / 2,
                             boxes[..., :2] + boxes[..., 2:] / 2], dim=-1).cpu()
        out = []
        for index, frame in enumerate(frames):
            _, height, width = frame.shape
            scaled = corners[index] * self.frame_scale(height, width)
            limit = torch.tensor([width, height, width, height], dtype=torch.float32)
            out.append(OwlOutput(logits[index].cpu(), torch.minimum(scaled.clamp(min=0), limit)))
        return out


def gaussian_blur(images: torch.Tensor, sigma: float, truncate: float = 4.0) -> torch.Tensor:
    """
    Blur [N, C, H, W] with a separable Gaussian, as scipy.ndimage.gaussian_filter.

    Mode 'mirror' (torch's reflect padding), the kernel cut at `truncate` sigmas.
    """
    radius = int(truncate * sigma + 0.5)
    if radius < 1:
        return images
    offsets = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (offsets / sigma) ** 2)
    kernel = kernel / kernel.sum()
    channels = images.shape[1]
    radius_h = min(radius, images.shape[2] - 1)
    radius_w = min(radius, images.shape[3] - 1)
    out = F.pad(images, (0, 0, radius_h, radius_h), mode='reflect')
    out = F.conv2d(out, kernel[radius - radius_h:radius + radius_h + 1].view(1, 1, -1, 1)
                   .expand(channels, 1, -1, 1).contiguous(), groups=channels)
    out = F.pad(out, (radius_w, radius_w, 0, 0), mode='reflect')
    return F.conv2d(out, kernel[radius - radius_w:radius + radius_w + 1].view(1, 1, 1, -1)
                    .expand(channels, 1, 1, -1).contiguous(), groups=channels)


def owl_label_scores(output: OwlOutput, num_labels: int) -> np.ndarray:
    """Return each label's image-level score [L]: its best patch score."""
    scores = output.logits.sigmoid().numpy()
    return scores.max(axis=0) if len(scores) else np.zeros(num_labels)


def owl_detections(output: OwlOutput, labels: tuple[str, ...], score_threshold: float,
                   nms_iou: float, max_detections: int) -> tuple[list[Detection], np.ndarray]:
    """
    Turn one frame's head output into detections (best first) and per-label scores [L].

    A patch proposes its box for its best query when that query's sigmoid score
    reaches score_threshold (OWL-ViT's post-processing), then per-label NMS. A
    label's image-level score is its best patch score.
    """
    scores = output.logits.sigmoid().numpy()  # [P, L]
    best = scores.argmax(axis=1)
    best_score = scores[np.arange(len(best)), best]
    keep = np.flatnonzero(best_score >= score_threshold)
    label_scores = owl_label_scores(output, len(labels))
    if keep.size == 0:
        return [], label_scores
    boxes = output.boxes.numpy().astype(np.float64)[keep]
    valid = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    keep, boxes = keep[valid], boxes[valid]
    if keep.size == 0:
        return [], label_scores
    kept = per_label_nms(boxes, best_score[keep], best[keep], nms_iou)
    kept = kept[np.argsort(-best_score[keep][kept], kind='stable')][:max_detections]
    return [Detection(labels[best[keep[k]]], float(best_score[keep[k]]),
                      tuple(map(float, boxes[k]))) for k in kept], label_scores
