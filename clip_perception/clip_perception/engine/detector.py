"""
Zero-shot detection: frames in, classification and boxes out.

The detector holds what every localizer shares: the encoder, the label and
background prompts' embeddings (cached), the settings and their checks, batched
and cancellable encoder passes. How boxes are made is the localizer's
(DetectorSettings.localizer, one class each in localizers/): sliding windows,
dense patch maps, Grad-CAM, or an OWL detection head.

Several frames (several cameras) share one encoder pass (with a heatmap
localizer, the frames of one size).
"""
from dataclasses import dataclass, field, replace
import logging
import threading
from typing import Sequence

from clip_perception.engine.encoder import ImageTextEncoder
from clip_perception.engine.localizers import FrameResult, localizer, ScoredWindows
from clip_perception.engine.preprocess import classification_input, frame_to_device, Normalizer
from clip_perception.engine.prompts import (ClassEmbeddings, DEFAULT_BACKGROUND_PROMPTS,
                                            DEFAULT_LABELS, DEFAULT_PROMPT_TEMPLATES,
                                            LabelEmbeddingCache)
from clip_perception.engine.scoring import class_logits, label_scores
from clip_perception.engine.sliding_windows.grid import window_grid, WindowSpec
from clip_perception.engine.sliding_windows.grouping import REFINEMENTS
import numpy as np
import torch

log = logging.getLogger(__name__)


# Where the image-level classification comes from (DetectorSettings.classification):
# 'windows' — per label its best pooled window evidence (label_evidence): "which of my
# labels is in view, and how sure"; 'whole_image' — CLIP's softmax over the labels of
# the whole frame squashed into the model's input (the labels compete, scores sum to 1).
CLASSIFICATIONS = ('windows', 'whole_image')
# Window and map settings are checked on a frame of this size (height, width) when set.
REFERENCE_FRAME = (480, 640)
# Texts encoded per text-encoder pass (a cancelled query stops between two).
TEXT_CHUNK = 256


def _bgr_flags(bgr: bool | Sequence[bool], count: int) -> list[bool]:
    """Return one BGR flag per frame: `bgr` for all, or its per-frame flags."""
    return [bgr] * count if isinstance(bgr, bool) else list(bgr)


class InferenceCancelled(RuntimeError):
    """ZeroShotDetector.cancel() (or a query's own cancel event) stopped an encoder pass."""


@dataclass(frozen=True)
class DetectorSettings:
    """Everything that shapes detection except the model itself."""

    labels: tuple[str, ...] = DEFAULT_LABELS
    prompt_templates: tuple[str, ...] = DEFAULT_PROMPT_TEMPLATES
    background_prompts: tuple[str, ...] = DEFAULT_BACKGROUND_PROMPTS
    windows: WindowSpec = field(default_factory=WindowSpec)
    score_threshold: float = 0.5
    nms_iou: float = 0.3
    max_detections: int = 20
    max_batch: int = 64
    box_refinement: str = 'merge'
    box_regression: bool = True  # move windows by the model's box regressor, if it has one
    max_windows: int = 2048  # most windows one frame may ask for (work and memory per frame)
    classification: str = 'windows'  # one of CLASSIFICATIONS
    localizer: str = 'windows'  # a name of localizers.REGISTRY
    map_size: int = 0  # heatmap localizers: input's shorter side in pixels; 0: the model's
    heatmap_threshold: float = 0.5  # gradcam: a region is where the map reaches this of its peak
    max_map_patches: int = 2048  # heatmap localizers: most encoder patches one frame may need
    # Also report what is selected at this lower threshold and is not one of the detections
    # (FrameResult.uncertain), selected apart so that the detections stay what they are
    # without it; None: none.
    uncertain_threshold: float | None = None

    def __post_init__(self):
        for name in ('score_threshold', 'nms_iou', 'heatmap_threshold'):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f'{name} must lie in [0, 1], got {value}')
        if self.max_detections < 1:
            raise ValueError(f'max_detections must be >= 1, got {self.max_detections}')
        if self.max_batch < 1:
            raise ValueError(f'max_batch must be >= 1, got {self.max_batch}')
        if self.max_windows < 1:
            raise ValueError(f'max_windows must be >= 1, got {self.max_windows}')
        if self.classification not in CLASSIFICATIONS:
            raise ValueError(f'classification must be one of {", ".join(CLASSIFICATIONS)}, '
                             f'not {self.classification!r}')
        if not localizer(self.localizer).whole_image and self.classification == 'whole_image':
            raise ValueError(f'classification whole_image needs a CLIP model; with localizer '
                             f"{self.localizer} a label's score is its best box score (windows)")
        if not 0 <= self.map_size <= 4096:
            raise ValueError(f'map_size must lie in [0, 4096], got {self.map_size}')
        if self.max_map_patches < 1:
            raise ValueError(f'max_map_patches must be >= 1, got {self.max_map_patches}')
        if self.uncertain_threshold is not None and \
                not 0.0 <= self.uncertain_threshold <= self.score_threshold:
            raise ValueError(f'uncertain_threshold must lie in [0, score_threshold], got '
                             f'{self.uncertain_threshold}')
        if self.box_refinement not in REFINEMENTS:
            raise ValueError(f'box_refinement must be one of {", ".join(REFINEMENTS)}, '
                             f'not {self.box_refinement!r}')

    def check_frame(self, height: int, width: int, patch: int | None = None,
                    model_side: int | None = None) -> None:
        """
        Raise ValueError when a height×width frame asks for more work than allowed.

        What is allowed is the localizer's (max_windows, max_map_patches, …);
        `patch` and `model_side` (the model's patch and input size) are needed by the
        heatmap localizers.
        """
        localizer(self.localizer).check_frame(self, height, width, patch, model_side)

    def window_grid(self, height: int, width: int) -> np.ndarray:
        """Return the frame's [N, 4] int xyxy windows, checked first (check_frame)."""
        self.check_frame(height, width)
        return window_grid(height, width, self.windows)


class ZeroShotDetector:
    """
    A zero-shot detector over one encoder: its localizer makes the boxes.

    The localizers use it through localizers.base.DetectionContext.
    """

    def __init__(self, encoder: ImageTextEncoder, settings: DetectorSettings | None = None):
        self.encoder = encoder
        self.settings = settings or DetectorSettings()
        self._text_cache = LabelEmbeddingCache(self._encode_texts)
        self.normalize = Normalizer(encoder.settings.mean, encoder.settings.std,
                                    encoder.device)
        # Crops per encoder pass: settings.max_batch, lowered after CUDA out-of-memory.
        self.batch_size = self.settings.max_batch
        self._cancelled = threading.Event()
        self._call_cancelled: threading.Event | None = None  # detect_query's, during the call
        self._check_encoder(self.settings)
        self.class_embeddings()  # validate the prompts and encode them now, not per frame

    def _check_encoder(self, settings: DetectorSettings) -> None:
        localizer(settings.localizer).check_encoder(self.encoder)
        self._check_frame(settings, *REFERENCE_FRAME)

    def _check_frame(self, settings: 'DetectorSettings', height: int, width: int) -> None:
        settings.check_frame(height, width, getattr(self.encoder, 'patch_size', None),
                             self.encoder.settings.crop)

    def check_settings(self, settings: 'DetectorSettings') -> None:
        """Raise ValueError when `settings` do not suit this encoder (or a reference frame)."""
        self._check_encoder(settings)

    def check_frame(self, height: int, width: int) -> None:
        """Raise ValueError when a height×width frame needs more work than the settings allow."""
        self._check_frame(self.settings, height, width)

    def update(self, **changes) -> DetectorSettings:
        """
        Replace settings (labels, thresholds, …).

        Invalid values raise ValueError and leave the detector as it was; prompts are
        re-encoded once, here.
        """
        candidate = replace(self.settings, **changes)
        self._check_encoder(candidate)
        self._text_cache.get(candidate.labels, candidate.prompt_templates,
                             candidate.background_prompts)
        self.settings = candidate
        if 'max_batch' in changes:
            self.batch_size = candidate.max_batch
        return candidate

    def class_embeddings(self) -> ClassEmbeddings:
        s = self.settings
        return self._text_cache.get(s.labels, s.prompt_templates, s.background_prompts)

    def detect(self, frame: np.ndarray, bgr: bool = False) -> FrameResult:
        """One H×W×3 uint8 frame (RGB, or BGR with `bgr`)."""
        return self.detect_batch([frame], bgr=bgr)[0]

    def detect_batch(self, frames: Sequence[np.ndarray], bgr: bool | Sequence[bool] = False,
                     keep_regions: bool | Sequence[bool] = False) -> list[FrameResult]:
        """
        Several frames, possibly of different sizes, in one batched encoder pass.

        `bgr`: one flag for all frames or one per frame. `keep_regions` (likewise): the
        frame's result carries its regions and their embeddings (moved to the CPU), with
        a localizer of REGION_LOCALIZERS.
        """
        return localizer(self.settings.localizer).detect(
            self, frames, _bgr_flags(bgr, len(frames)), _bgr_flags(keep_regions, len(frames)))

    def detect_query(self, frames: Sequence[np.ndarray], bgr: bool | Sequence[bool] = False,
                     cancelled: threading.Event | None = None,
                     **changes) -> list[FrameResult]:
        """
        Detect with settings changed for this call only (labels, score_threshold, …).

        The detector's own settings stay as they are; the query's prompts are encoded
        once and kept in the text cache (an LRU) for the next such query. Call it from
        the thread that calls detect_batch. ValueError for invalid changes. When
        `cancelled` is set (the caller gave up), the call stops at its next encoder
        chunk with InferenceCancelled. No uncertain detections (they are a tracker's).
        """
        query = replace(self.settings, uncertain_threshold=None, **changes)
        self._check_encoder(query)
        streaming, self.settings = self.settings, query
        self._call_cancelled = cancelled
        try:
            for frame in frames:
                self.check_frame(frame.shape[0], frame.shape[1])
            return self.detect_batch(frames, bgr)
        finally:
            self.settings = streaming
            self._call_cancelled = None

    def query_embeddings(self, label: str) -> ClassEmbeddings:
        """
        Embed the text side of a memory search: `label`'s prompt ensemble, then the background.

        Embedded like a label (the settings' templates), cached like one.
        """
        s = self.settings
        return self._text_cache.get((label,), s.prompt_templates, s.background_prompts)

    def whole_image_scores(self, frame: np.ndarray, bgr: bool) -> np.ndarray:
        """Label scores [L] of CLIP's own view of the whole frame (softmax over the labels)."""
        image, classes = self.encoder.settings, self.class_embeddings()
        pixels = classification_input(frame_to_device(frame, self.encoder.device, bgr=bgr),
                                      image.resize, image.crop, self.normalize)
        logits = class_logits(self.encode_images(pixels), classes.matrix,
                              self.encoder.logit_scale)
        return label_scores(logits, classes.num_labels)[0].cpu().numpy()

    @property
    def regresses_boxes(self) -> bool:
        """Whether boxes are moved by the model's box regressor (the localizer uses one)."""
        return (localizer(self.settings.localizer).uses_box_regressor
                and self.settings.box_regression and self.encoder.box_regressor is not None)

    @property
    def keeps_regions(self) -> bool:
        """Whether the localizer's pass embeds regions a memory can search by text."""
        return localizer(self.settings.localizer).keeps_regions

    def score_windows(self, frames: Sequence[np.ndarray], bgr: bool | Sequence[bool] = False,
                      windows: Sequence[np.ndarray] | None = None) -> list[ScoredWindows]:
        """
        Score the windows of several frames in one batched encoder pass (the windows pass).

        Per frame its ScoredWindows. `windows`: per frame the [N, 4] int xyxy windows
        to score instead of the grid of the settings.
        """
        return localizer('windows').score_windows(self, frames, _bgr_flags(bgr, len(frames)),
                                                  windows)

    def classify_crops(self, crops: torch.Tensor) -> tuple[list[str], np.ndarray]:
        """
        Classify crops as the detector decides a window.

        [N, 3, crop, crop] pixels 0..255 (any device, uint8 or float) -> per crop the
        best class and its probability [N], decided as a window is: against every label
        (prompt ensemble) and every background prompt. A background prompt is named ''.
        """
        classes = self.class_embeddings()
        embeddings = self.encode_images(self.normalize(crops.to(self.encoder.device).float()))
        probabilities = class_logits(embeddings, classes.matrix,
                                     self.encoder.logit_scale).softmax(dim=-1)
        best = probabilities.max(dim=1)
        names = classes.column_labels
        return [names[i] for i in best.indices.tolist()], best.values.cpu().numpy()

    def cancel(self) -> None:
        """
        Stop the encoder pass in progress at its next chunk, and every later one.

        The pass raises InferenceCancelled; for shutting down (a stop need not wait
        for a whole frame of thousands of windows).
        """
        self._cancelled.set()

    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Encode in chunks of `batch_size`; on CUDA out-of-memory halve it and retry."""
        while True:
            try:
                return torch.cat([self._encode_chunk(chunk)
                                  for chunk in pixels.split(self.batch_size)])
            except torch.cuda.OutOfMemoryError:
                if self.batch_size == 1:
                    raise
                self.batch_size = max(1, self.batch_size // 2)
                torch.cuda.empty_cache()
                log.warning('CUDA out of memory: batch lowered to %d crops', self.batch_size)

    def _encode_chunk(self, pixels: torch.Tensor) -> torch.Tensor:
        self.raise_if_cancelled()
        return self.encoder.encode_images(pixels)

    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Encode prompts TEXT_CHUNK at a time, so that a cancel stops a long list too."""
        chunks = []
        for start in range(0, len(texts), TEXT_CHUNK):
            self.raise_if_cancelled()
            chunks.append(self.encoder.encode_texts(texts[start:start + TEXT_CHUNK]))
        return torch.cat(chunks)

    def raise_if_cancelled(self) -> None:
        """Raise InferenceCancelled when cancel() was called or the query's caller gave up."""
        call = self._call_cancelled
        if self._cancelled.is_set() or (call is not None and call.is_set()):
            raise InferenceCancelled('the detector was cancelled')
