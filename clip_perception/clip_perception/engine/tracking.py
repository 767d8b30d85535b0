"""
Identities across frames: a ByteTrack-style tracker (Zhang et al., 2022) per camera.

Each track is one object of one label with a constant-velocity box: every frame
its box is predicted one step ahead (centre and size moved by their smoothed
per-frame change), then detections are associated in two passes, each an
optimal assignment on 1 − IoU within a label (scipy's linear_sum_assignment):

1. every track against the confident detections (the detector's detections, or
   those scoring >= high_score), IoU >= match_iou;
2. the tracks seen in the previous frame and still unmatched against the
   uncertain detections (the detector's uncertain ones, or those scoring from
   low_score up to high_score), IoU >= 0.5: an object whose score dips for a
   frame (occlusion, blur) keeps its identity.

Unmatched confident detections start new tracks (new ids); uncertain ones that
match no track are dropped. A new track is tentative until it has been matched
in min_hits frames in a row (ByteTrack's activation: min_hits 2; SORT's
min_hits): its detections are not passed on, it takes no uncertain detection,
and it is dropped at its first miss, so a false detection of one frame never
becomes a track. While the tracker has seen fewer than min_hits frames, new
tracks are confirmed at once (objects in view at the start are not held back).
A confirmed track unmatched for more than max_missed frames is retired; its id
is never reused. At most max_tracks tracks are kept (the
ones unmatched longest retire first), so the work per frame stays bounded
whatever the detections do.
"""
from dataclasses import dataclass, field, replace
import itertools
from typing import Iterator

from clip_perception.engine.boxes import center_size, Detection, pairwise_iou
import numpy as np
from scipy.optimize import linear_sum_assignment

# IoU an uncertain detection needs with a track of the previous frame (ByteTrack's).
LOW_MATCH_IOU = 0.5
# Weight of the newest per-frame change in the smoothed velocity.
VELOCITY_GAIN = 0.5


@dataclass(frozen=True)
class TrackerSettings:
    """Thresholds of the two association passes and a track's lifetime."""

    high_score: float = 0.5  # confident detections: matched first, may start tracks
    low_score: float = 0.1  # uncertain ones down to this only continue tracks
    match_iou: float = 0.3  # least IoU between a predicted track box and a confident detection
    max_missed: int = 15  # frames a track survives unmatched
    max_tracks: int = 200  # tracks kept; the ones unmatched longest retire first
    min_hits: int = 2  # frames in a row a new track is matched before it is published

    def __post_init__(self):
        if not 0.0 <= self.low_score <= self.high_score <= 1.0:
            raise ValueError('tracking needs 0 <= low_score <= high_score <= 1, got '
                             f'{self.low_score} and {self.high_score}')
        if not 0.0 < self.match_iou <= 1.0:
            raise ValueError(f'track_match_iou must lie in (0, 1], got {self.match_iou}')
        for name, value, least in (('track_max_missed', self.max_missed, 0),
                                   ('track_max_tracks', self.max_tracks, 1),
                                   ('track_min_hits', self.min_hits, 1)):
            if value < least:
                raise ValueError(f'{name} must be >= {least}, got {value}')


@dataclass
class Track:
    """One object's state: xyxy box, per-frame velocity of (cx, cy, w, h), age."""

    track_id: str
    label: str
    box: np.ndarray
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))
    missed: int = 0
    hits: int = 1  # frames matched (its first detection included)
    confirmed: bool = True

    def predicted(self) -> np.ndarray:
        """Predict the box one frame ahead (centre and size moved by the velocity)."""
        cx, cy, w, h = np.array(center_size(self.box)) + self.velocity
        w, h = max(w, 1.0), max(h, 1.0)
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])

    def observe(self, box: np.ndarray) -> None:
        change = np.subtract(center_size(box), center_size(self.box))
        # a track coming back after misses: its change spans several frames
        self.velocity = ((1 - VELOCITY_GAIN) * self.velocity +
                         VELOCITY_GAIN * change / (self.missed + 1))
        self.box = np.asarray(box, dtype=np.float64)
        self.missed = 0
        self.hits += 1


class Tracker:
    """
    Give one camera's detections stable ids, frame after frame.

    `ids` counts the ids handed out; trackers of several cameras share one so an
    id names one object node-wide.
    """

    def __init__(self, settings: TrackerSettings | None = None,
                 ids: Iterator[int] | None = None):
        self.settings = settings or TrackerSettings()
        self.tracks: list[Track] = []
        self._ids = ids if ids is not None else itertools.count(1)
        self._frames = 0  # frames seen since the start (or reset)

    def update(self, detections: list[Detection],
               uncertain: list[Detection] | None = None) -> list[Detection]:
        """
        Associate one frame's detections with the tracks.

        `detections` are the confident ones and `uncertain` the others (the
        detector's own split: a merged window group may score under the threshold
        that proposed it, and is still a detection); without `uncertain`,
        `detections` are split by high_score and low_score. Return the detections
        that belong to a track, each with its track_id, best score first: every
        confident one (old or new tracks) and the uncertain ones that continued a
        track seen in the previous frame.
        """
        s = self.settings
        self._frames += 1
        if uncertain is None:
            detections, uncertain = (
                [d for d in detections if d.score >= s.high_score],
                [d for d in detections if s.low_score <= d.score < s.high_score])
        confident = list(detections)
        predicted = [track.predicted() for track in self.tracks]
        fresh = [track.missed == 0 and track.confirmed for track in self.tracks]
        first = _assign(self.tracks, predicted, range(len(self.tracks)), confident, s.match_iou)
        left = [i for i in range(len(self.tracks)) if i not in first.values() and fresh[i]]
        second = _assign(self.tracks, predicted, left, uncertain, LOW_MATCH_IOU)
        out = []
        for pool, matches in ((confident, first), (uncertain, second)):
            for index, track_index in matches.items():
                track = self.tracks[track_index]
                track.observe(np.asarray(pool[index].box, dtype=np.float64))
                track.confirmed = track.confirmed or track.hits >= s.min_hits
                if track.confirmed:
                    out.append(replace(pool[index], track_id=track.track_id))
        matched = set(first.values()) | set(second.values())
        for i, track in enumerate(self.tracks):
            if i not in matched:
                track.missed += 1
        self.tracks = [t for t in self.tracks
                       if t.missed <= (s.max_missed if t.confirmed else 0)]
        for index, found in enumerate(confident):
            if index not in first:
                track = Track(str(next(self._ids)), found.label,
                              np.asarray(found.box, dtype=np.float64),
                              confirmed=s.min_hits <= 1 or self._frames < s.min_hits)
                self.tracks.append(track)
                if track.confirmed:
                    out.append(replace(found, track_id=track.track_id))
        if len(self.tracks) > s.max_tracks:  # the ones unmatched longest go first (stable)
            self.tracks = sorted(self.tracks, key=lambda t: t.missed)[:s.max_tracks]
        return sorted(out, key=lambda d: -d.score)

    def reset(self) -> None:
        """Forget every track (ids already handed out are not reused)."""
        self.tracks.clear()
        self._frames = 0


def _assign(tracks: list[Track], predicted: list[np.ndarray], track_indices,
            detections: list[Detection], min_iou: float) -> dict[int, int]:
    """Match detections to tracks of their label: {detection index: track index}."""
    by_label: dict[str, tuple[list[int], list[int]]] = {}
    for index, found in enumerate(detections):
        by_label.setdefault(found.label, ([], []))[0].append(index)
    for index in track_indices:
        if tracks[index].label in by_label:
            by_label[tracks[index].label][1].append(index)
    matches = {}
    for rows_of, cols_of in by_label.values():  # one assignment per label: small matrices
        if not cols_of:
            continue
        iou = pairwise_iou(np.array([detections[i].box for i in rows_of], dtype=np.float64),
                           np.array([predicted[i] for i in cols_of]))
        rows, cols = linear_sum_assignment(1.0 - iou)
        matches.update({rows_of[r]: cols_of[c] for r, c in zip(rows, cols)
                        if iou[r, c] >= min_iou})
    return matches
