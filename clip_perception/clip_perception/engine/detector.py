"""
Zero-shot detection: frames in, classification and boxes out.

    frame (uint8 H×W×3) -> device tensor -> window grid -> crop batch
      -> one batched image-encoder pass -> logits against cached label and
      background embeddings (and windows moved by the model's box regressor,
      when it has one) -> thresholds, NMS, merging -> Detection list

or, with a heatmap localizer (DetectorSettings.localizer, see heatmaps.maps):

    frame -> device tensor -> one whole-frame encoder pass -> per-label maps
      (dense: patch embeddings against the classes; gradcam: Grad-CAM) -> regions
      -> Detection list

Several frames (several cameras) share one encoder pass (with a heatmap
localizer, the frames of one size).
"""
from dataclasses import dataclass, field, replace
import logging
import threading
from typing import NamedTuple, Sequence

from clip_perception.engine.boxes import Detection, uncertain_only
from clip_perception.engine.encoder import ImageTextEncoder
from clip_perception.engine.heatmaps.maps import (dense_detections, gradcam_detections,
                                                  HEATMAP_LOCALIZERS, map_input_size)
from clip_perception.engine.memory import Regions
from clip_perception.engine.owl import owl_detections
from clip_perception.engine.preprocess import (classification_input, frame_to_device,
                                               Normalizer, resize_bicubic)
from clip_perception.engine.prompts import (ClassEmbeddings, DEFAULT_BACKGROUND_PROMPTS,
                                            DEFAULT_LABELS, DEFAULT_PROMPT_TEMPLATES,
                                            LabelEmbeddingCache)
from clip_perception.engine.scoring import class_logits, label_scores
from clip_perception.engine.sliding_windows.crops import crop_batch
from clip_perception.engine.sliding_windows.grid import window_count, window_grid, WindowSpec
from clip_perception.engine.sliding_windows.grouping import (label_evidence, REFINEMENTS,
                                                             select_detections)
import numpy as np
import torch

log = logging.getLogger(__name__)


# Where the image-level classification comes from (DetectorSettings.classification):
# 'windows' — per label its best pooled window evidence (label_evidence): "which of my
# labels is in view, and how sure"; 'whole_image' — CLIP's softmax over the labels of
# the whole frame squashed into the model's input (the labels compete, scores sum to 1).
CLASSIFICATIONS = ('windows', 'whole_image')
# How boxes are made (DetectorSettings.localizer): 'windows' — sliding windows, each
# classified (sliding_windows/); the heatmap localizers (heatmaps/): 'dense' — patch
# embeddings against the labels, 'gradcam' — Grad-CAM of the whole frame's label scores.
# 'owlvit' — the boxes and scores of an OWL-ViT / OWLv2 detection model (owl.py).
LOCALIZERS = ('windows',) + HEATMAP_LOCALIZERS + ('owlvit',)
# Localizers whose pass embeds regions of the frame in CLIP's joint space (windows; dense's
# patch cells): what a memory of frames can search by text (FrameResult.regions).
REGION_LOCALIZERS = ('windows', 'dense')
# Window and map settings are checked on a frame of this size (height, width) when set.
REFERENCE_FRAME = (480, 640)
# Texts encoded per text-encoder pass (a cancelled query stops between two).
TEXT_CHUNK = 256


def _bgr_flags(bgr: bool | Sequence[bool], count: int) -> list[bool]:
    """Return one BGR flag per frame: `bgr` for all, or its per-frame flags."""
    return [bgr] * count if isinstance(bgr, bool) else list(bgr)


def patch_regions(patches: torch.Tensor, height: int, width: int) -> Regions:
    """[rows, cols, D] patch embeddings over a height×width frame -> their cells as Regions."""
    rows, cols = patches.shape[:2]
    xs, ys = np.linspace(0.0, width, cols + 1), np.linspace(0.0, height, rows + 1)
    x0, y0 = np.meshgrid(xs[:-1], ys[:-1])
    x1, y1 = np.meshgrid(xs[1:], ys[1:])
    boxes = np.stack([x0, y0, x1, y1], axis=-1).reshape(-1, 4)
    return Regions(boxes, patches.reshape(rows * cols, -1).float().cpu())


class InferenceCancelled(RuntimeError):
    """ZeroShotDetector.cancel() (or a query's own cancel event) stopped an encoder pass."""


def _confident_and_uncertain(select, settings: 'DetectorSettings'):
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
    localizer: str = 'windows'  # one of LOCALIZERS
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
        if self.localizer not in LOCALIZERS:
            raise ValueError(f'localizer must be one of {", ".join(LOCALIZERS)}, '
                             f'not {self.localizer!r}')
        if self.localizer == 'owlvit' and self.classification == 'whole_image':
            raise ValueError('classification whole_image needs a CLIP model; with localizer '
                             "owlvit a label's score is its best box score (windows)")
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

        windows: more than max_windows windows. dense, gradcam: an encoder input of
        more than max_map_patches patches (map_size fixes the shorter side, so the
        longer one grows with the aspect ratio); `patch` and `model_side` (the
        model's patch and input size) are needed for them. owlvit: one pass at the
        model's own size, always bounded.
        """
        if self.localizer in HEATMAP_LOCALIZERS and patch:
            rows, cols = map_input_size(height, width, self.map_size or model_side or patch,
                                        patch)
            count = (rows // patch) * (cols // patch)
            if count > self.max_map_patches:
                raise ValueError(
                    f'a {width}×{height} frame would need {count} patches at map_size '
                    f'{self.map_size or model_side}, more than max_map_patches='
                    f'{self.max_map_patches}')
            return
        if self.localizer != 'windows':
            return
        count = window_count(height, width, self.windows)
        if count > self.max_windows:
            raise ValueError(f'a {width}×{height} frame would need {count} windows with these '
                             f'window settings, more than max_windows={self.max_windows}')

    def window_grid(self, height: int, width: int) -> np.ndarray:
        """Return the frame's [N, 4] int xyxy windows, checked first (check_frame)."""
        self.check_frame(height, width)
        return window_grid(height, width, self.windows)


@dataclass(frozen=True)
class FrameResult:
    """
    What the detector found in one frame.

    classification: (label, score) for every label, best first (see CLASSIFICATIONS).
    detections: best first. num_windows: encoder inputs of the frame (the whole-frame
    pass included). heatmaps: with a heatmap localizer, its maps [L, rows, cols] in 0..1
    over the whole frame (Grad-CAM maps scaled to their peak), one per label of
    `heatmap_labels` (the labels this frame was detected with). regions: when asked
    for (detect_batch's keep_regions, REGION_LOCALIZERS), the frame's windows or patch
    cells with their embeddings, for a memory of frames. uncertain: with the settings'
    uncertain_threshold, the detections scoring from it up to score_threshold that are
    not one of `detections` (for a tracker's second pass), best first; like a
    detection's, their scores are the merged windows' (they may lie above
    uncertain_threshold or even above score_threshold).
    """

    classification: list[tuple[str, float]]
    detections: list[Detection]
    num_windows: int
    heatmaps: np.ndarray | None = None
    heatmap_labels: tuple[str, ...] = ()
    regions: Regions | None = None
    uncertain: list[Detection] = field(default_factory=list)


class ScoredWindows(NamedTuple):
    """
    One frame's encoder pass.

    whole_image: label scores [L] of the whole image; windows: [N, 4] int xyxy; embeddings:
    [N, D] their L2-normalized image embeddings (on the encoder's device); logits: [N, K]
    over the labels then the background prompts; boxes: [N, 4] float xyxy, the windows
    moved by the box regressor (the windows themselves without one, or with box_regression
    off).
    """

    whole_image: np.ndarray
    windows: np.ndarray
    embeddings: torch.Tensor
    logits: np.ndarray
    boxes: np.ndarray


class ZeroShotDetector:
    """CLIP zero-shot classifier and sliding-window localizer over one encoder."""

    def __init__(self, encoder: ImageTextEncoder, settings: DetectorSettings | None = None):
        self.encoder = encoder
        self.settings = settings or DetectorSettings()
        self._text_cache = LabelEmbeddingCache(self._encode_texts)
        self._normalize = Normalizer(encoder.settings.mean, encoder.settings.std,
                                     encoder.device)
        # Crops per encoder pass: settings.max_batch, lowered after CUDA out-of-memory.
        self.batch_size = self.settings.max_batch
        self._cancelled = threading.Event()
        self._call_cancelled: threading.Event | None = None  # detect_query's, during the call
        self._check_encoder(self.settings)
        self.class_embeddings()  # validate the prompts and encode them now, not per frame

    def _check_encoder(self, settings: DetectorSettings) -> None:
        needs = {'dense': 'encode_patches', 'gradcam': 'gradcam',
                 'owlvit': 'detect_frames'}.get(settings.localizer, 'encode_images')
        if not callable(getattr(self.encoder, needs, None)):
            what = {'detect_frames': 'an OWL-ViT or OWLv2 model',
                    'encode_images': 'a CLIP model'}.get(needs, 'an encoder with patch maps')
            raise ValueError(f'localizer {settings.localizer} needs {what} ({needs}); '
                             f'{type(self.encoder).__name__} has none')
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
        s = self.settings
        keep = _bgr_flags(keep_regions, len(frames))
        if s.localizer in HEATMAP_LOCALIZERS:
            return self._detect_by_heatmaps(frames, bgr, keep)
        if s.localizer == 'owlvit':
            return self._detect_by_owl(frames, bgr)
        labels = self.class_embeddings().labels
        results = []
        for scored, kept in zip(self.score_windows(frames, bgr), keep):
            image_scores = scored.whole_image
            if s.classification == 'windows':
                image_scores = label_evidence(scored.boxes, scored.logits, len(labels))
            order = np.argsort(-image_scores, kind='stable')
            detections, uncertain = _confident_and_uncertain(
                lambda threshold, scored=scored: select_detections(
                    scored.boxes, scored.logits, labels, threshold, s.nms_iou,
                    s.max_detections, s.box_refinement), s)
            regions = Regions(scored.boxes, scored.embeddings.float().cpu()) if kept else None
            results.append(FrameResult(
                [(labels[i], float(image_scores[i])) for i in order], detections,
                len(scored.windows), regions=regions, uncertain=uncertain))
        return results

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

    def _detect_by_heatmaps(self, frames: Sequence[np.ndarray], bgr: bool | Sequence[bool],
                            keep: Sequence[bool]) -> list[FrameResult]:
        """Detect with the heatmap localizer: frames of one size share an encoder pass."""
        s, encoder = self.settings, self.encoder
        classes = self.class_embeddings()
        flags = _bgr_flags(bgr, len(frames))
        short_side = s.map_size or encoder.settings.crop
        patch = encoder.patch_size
        inputs = [self._normalize(resize_bicubic(
            frame_to_device(frame, encoder.device, bgr=is_bgr),
            *map_input_size(frame.shape[0], frame.shape[1], short_side, patch))[None])
            for frame, is_bgr in zip(frames, flags, strict=True)]
        by_size = {}
        for index, pixels in enumerate(inputs):
            by_size.setdefault(tuple(pixels.shape[-2:]), []).append(index)
        results = [None] * len(frames)
        for indices in by_size.values():
            self._raise_if_cancelled()
            pixels = torch.cat([inputs[i] for i in indices])
            if s.localizer == 'dense':
                patches = encoder.encode_patches(pixels)  # [n, rows, cols, D]
                logits = class_logits(patches, classes.matrix, encoder.logit_scale)
                maps = logits.softmax(dim=-1)[..., :classes.num_labels].permute(0, 3, 1, 2)
                maps = maps.cpu().numpy()
                evidence = maps.max(axis=(2, 3))
            else:
                logits, cams = encoder.gradcam(pixels, classes.matrix, classes.num_labels)
                evidence = logits.softmax(dim=-1)[:, :classes.num_labels].cpu().numpy()
                cams = cams.cpu().numpy()
                maps = cams / np.maximum(cams.max(axis=(2, 3), keepdims=True), 1e-12)
            for row, index in enumerate(indices):
                height, width = frames[index].shape[:2]
                if s.localizer == 'dense':
                    def select(threshold, row=row, height=height, width=width):
                        return dense_detections(maps[row], classes.labels, height, width, patch,
                                                threshold, s.nms_iou, s.max_detections)
                else:
                    def select(threshold, row=row, height=height, width=width):
                        return gradcam_detections(
                            maps[row], evidence[row], classes.labels, height, width, patch,
                            threshold, s.heatmap_threshold, s.nms_iou, s.max_detections)
                detections, uncertain = _confident_and_uncertain(select, s)
                scores = evidence[row]
                regions = None
                if keep[index] and s.localizer == 'dense':
                    regions = patch_regions(patches[row], height, width)
                if s.classification == 'whole_image':
                    scores = self._whole_image_scores(frames[index], flags[index])
                order = np.argsort(-scores, kind='stable')
                results[index] = FrameResult(
                    [(classes.labels[i], float(scores[i])) for i in order], detections, 1,
                    maps[row], classes.labels, regions, uncertain)
        return results

    def _detect_by_owl(self, frames: Sequence[np.ndarray],
                       bgr: bool | Sequence[bool]) -> list[FrameResult]:
        """Detect with an OWL-ViT / OWLv2 head: one batched pass, cached query embeddings."""
        s, classes = self.settings, self.class_embeddings()
        flags = _bgr_flags(bgr, len(frames))
        self._raise_if_cancelled()
        outputs = self.encoder.detect_frames(
            [frame_to_device(frame, self.encoder.device, bgr=is_bgr)
             for frame, is_bgr in zip(frames, flags, strict=True)],
            classes.matrix[:classes.num_labels])
        results = []
        for output in outputs:
            detections, uncertain = _confident_and_uncertain(
                lambda threshold, output=output: owl_detections(
                    output, classes.labels, threshold, s.nms_iou, s.max_detections)[0], s)
            scores = owl_detections(output, classes.labels, s.score_threshold, s.nms_iou,
                                    s.max_detections)[1]
            order = np.argsort(-scores, kind='stable')
            results.append(FrameResult([(classes.labels[i], float(scores[i])) for i in order],
                                       detections, 1, uncertain=uncertain))
        return results

    def _whole_image_scores(self, frame: np.ndarray, bgr: bool) -> np.ndarray:
        """Label scores [L] of CLIP's own view of the whole frame (softmax over the labels)."""
        image, classes = self.encoder.settings, self.class_embeddings()
        pixels = classification_input(frame_to_device(frame, self.encoder.device, bgr=bgr),
                                      image.resize, image.crop, self._normalize)
        logits = class_logits(self.encode_images(pixels), classes.matrix,
                              self.encoder.logit_scale)
        return label_scores(logits, classes.num_labels)[0].cpu().numpy()

    @property
    def regresses_boxes(self) -> bool:
        # only windows are moved: the other localizers make their boxes without it
        return (self.settings.localizer == 'windows' and self.settings.box_regression
                and self.encoder.box_regressor is not None)

    def score_windows(self, frames: Sequence[np.ndarray], bgr: bool | Sequence[bool] = False,
                      windows: Sequence[np.ndarray] | None = None) -> list[ScoredWindows]:
        """
        Score the windows of several frames in one batched encoder pass.

        Per frame, from one batched encoder pass: its ScoredWindows. `windows`: per
        frame the [N, 4] int xyxy windows to score instead of the grid of the settings.
        """
        image = self.encoder.settings
        classes = self.class_embeddings()
        flags = _bgr_flags(bgr, len(frames))
        if windows is None:
            windows = [self.settings.window_grid(frame.shape[0], frame.shape[1])
                       for frame in frames]
        inputs, grids = [], []
        for frame, is_bgr, grid in zip(frames, flags, windows, strict=True):
            tensor = frame_to_device(frame, self.encoder.device, bgr=is_bgr)
            inputs.append(classification_input(tensor, image.resize, image.crop,
                                               self._normalize))
            inputs.append(crop_batch(tensor, grid, image.crop, self._normalize))
            grids.append(grid)
        embeddings = self.encode_images(torch.cat(inputs))
        logits = class_logits(embeddings, classes.matrix, self.encoder.logit_scale)
        whole_image = label_scores(logits, classes.num_labels).cpu().numpy()
        logits = logits.cpu().numpy()
        out, start = [], 0
        for frame, grid in zip(frames, grids):
            rows = slice(start + 1, start + 1 + len(grid))
            boxes = grid.astype(np.float64)
            if self.regresses_boxes:
                boxes = self.encoder.box_regressor.regress(grid, embeddings[rows],
                                                           frame.shape[0], frame.shape[1])
            out.append(ScoredWindows(whole_image[start], grid, embeddings[rows], logits[rows],
                                     boxes))
            start += 1 + len(grid)
        return out

    def classify_crops(self, crops: torch.Tensor) -> tuple[list[str], np.ndarray]:
        """
        Classify crops as the detector decides a window.

        [N, 3, crop, crop] pixels 0..255 (any device, uint8 or float) -> per crop the
        best class and its probability [N], decided as a window is: against every label
        (prompt ensemble) and every background prompt. A background prompt is named ''.
        """
        classes = self.class_embeddings()
        embeddings = self.encode_images(self._normalize(crops.to(self.encoder.device).float()))
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
        self._raise_if_cancelled()
        return self.encoder.encode_images(pixels)

    def _encode_texts(self, texts: list[str]) -> torch.Tensor:
        """Encode prompts TEXT_CHUNK at a time, so that a cancel stops a long list too."""
        chunks = []
        for start in range(0, len(texts), TEXT_CHUNK):
            self._raise_if_cancelled()
            chunks.append(self.encoder.encode_texts(texts[start:start + TEXT_CHUNK]))
        return torch.cat(chunks)

    def _raise_if_cancelled(self) -> None:
        call = self._call_cancelled
        if self._cancelled.is_set() or (call is not None and call.is_set()):
            raise InferenceCancelled('the detector was cancelled')
