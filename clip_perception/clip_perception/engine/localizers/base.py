"""
What a localizer is: the small protocol the detector calls, and what it returns.

A localizer turns frames into detections with the detector's shared parts (the
encoder, the cached label embeddings, the thresholds, batching and
cancellation: `DetectionContext`); it says what it needs from the encoder,
whether it keeps regions for a memory, draws heatmaps or uses the model's box
regressor, and how much work a frame of a given size asks of it.
"""
from dataclasses import dataclass, field
from typing import ClassVar, Protocol, Sequence, TYPE_CHECKING

from clip_perception.engine.boxes import Detection, uncertain_only
from clip_perception.engine.memory import Regions
import numpy as np
import torch

if TYPE_CHECKING:
    from clip_perception.engine.detector import DetectorSettings
    from clip_perception.engine.encoder import ImageTextEncoder
    from clip_perception.engine.preprocess import Normalizer
    from clip_perception.engine.prompts import ClassEmbeddings


@dataclass(frozen=True)
class FrameResult:
    """
    What the detector found in one frame.

    classification: (label, score) for every label, best first (see CLASSIFICATIONS).
    detections: best first. num_windows: encoder inputs of the frame (the whole-frame
    pass included). heatmaps: with a localizer that draws them, its maps [L, rows, cols]
    in 0..1 over the whole frame (Grad-CAM maps scaled to their peak), one per label of
    `heatmap_labels` (the labels this frame was detected with). regions: when asked
    for (detect_batch's keep_regions, a localizer that keeps regions), the frame's
    windows or patch cells with their embeddings, for a memory of frames. uncertain:
    with the settings' uncertain_threshold, the detections scoring from it up to
    score_threshold that are not one of `detections` (for a tracker's second pass),
    best first; like a detection's, their scores are the merged windows' (they may lie
    above uncertain_threshold or even above score_threshold).
    """

    classification: list[tuple[str, float]]
    detections: list[Detection]
    num_windows: int
    heatmaps: np.ndarray | None = None
    heatmap_labels: tuple[str, ...] = ()
    regions: Regions | None = None
    uncertain: list[Detection] = field(default_factory=list)


class DetectionContext(Protocol):
    """What a localizer uses of the detector (ZeroShotDetector is one)."""

    encoder: 'ImageTextEncoder'
    settings: 'DetectorSettings'
    normalize: 'Normalizer'

    def class_embeddings(self) -> 'ClassEmbeddings':
        """Return the labels' and background prompts' embeddings (cached)."""

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Encode normalized pixels in batches, stopping when cancelled."""

    def raise_if_cancelled(self) -> None:
        """Raise InferenceCancelled when the pass should stop."""

    def whole_image_scores(self, frame: np.ndarray, bgr: bool) -> np.ndarray:
        """Label scores [L] of the encoder's view of the whole frame."""


class Localizer:
    """
    One way of making boxes; subclasses are registered by `name` (localizers/__init__.py).

    encoder_method: what the encoder must offer (its refusal names it and
    `encoder_kind`). keeps_regions: its pass embeds regions of the frame in the joint
    space, which a memory of frames can search by text. draws_heatmaps: its results
    carry per-label maps. uses_box_regressor: it moves its boxes by the model's box
    regressor (when the model has one and box_regression is on). whole_image: it can
    classify the frame with CLIP's whole-image view (classification whole_image).
    model_family: what the `model` parameter names for it ('clip': a CLIP or a
    convolutional dual encoder; 'owl': an OWL-ViT / OWLv2 detector).
    """

    name: ClassVar[str]
    encoder_method: ClassVar[str] = 'encode_images'
    encoder_kind: ClassVar[str] = 'a CLIP model'
    keeps_regions: ClassVar[bool] = False
    draws_heatmaps: ClassVar[bool] = False
    uses_box_regressor: ClassVar[bool] = False
    whole_image: ClassVar[bool] = True
    model_family: ClassVar[str] = 'clip'

    def check_encoder(self, encoder) -> None:
        """Raise ValueError when `encoder` cannot serve this localizer, saying why."""
        if not callable(getattr(encoder, self.encoder_method, None)):
            raise ValueError(f'localizer {self.name} needs {self.encoder_kind} '
                             f'({self.encoder_method}); {type(encoder).__name__} has none')

    def check_frame(self, settings: 'DetectorSettings', height: int, width: int,
                    patch: int | None, model_side: int | None) -> None:
        """Raise ValueError when a height×width frame asks for more work than allowed."""

    def detect(self, context: DetectionContext, frames: Sequence[np.ndarray],
               bgr: Sequence[bool], keep: Sequence[bool]) -> list[FrameResult]:
        """Detect in frames (their BGR flags, whether to keep each one's regions)."""
        raise NotImplementedError


def confident_and_uncertain(select, settings: 'DetectorSettings'):
    """
    Select at score_threshold, and apart at uncertain_threshold for the uncertain ones.

    `select(threshold)` -> detections. Apart, because a lower threshold changes what
    is selected above it (windows merge into larger groups, regions grow): the
    confident detections are the same with or without uncertain_threshold.
    """
    confident = select(settings.score_threshold)
    low = settings.uncertain_threshold
    if low is None or low >= settings.score_threshold:
        return confident, []
    return confident, uncertain_only(select(low), confident, settings.nms_iou)


def ranked(labels: Sequence[str], scores: np.ndarray) -> list[tuple[str, float]]:
    """(label, score) pairs, best first (ties in label order)."""
    order = np.argsort(-scores, kind='stable')
    return [(labels[i], float(scores[i])) for i in order]
