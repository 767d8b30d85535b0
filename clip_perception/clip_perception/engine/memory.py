"""
A memory of recent frames: "where did I last see the tape measure?".

Each stored frame keeps its regions (the windows of the windows localizer, the
patch cells of dense) with their L2-normalized image embeddings, which the
detection pass computed anyway. A query is a label embedded like the labels
(prompt ensemble) and scored against every region like a window is decided:
softmax over the query and the background prompts, so a region's score is the
probability that it shows the query rather than the bench. Each frame answers
with its best region; the best frames come first.

Regions are searched exactly (one matrix product over the frames in the time
range). A node keeps memory_frames × its windows, tens of thousands of vectors:
bench/bench_memory.py measures ~20 ms per query at 100k, so brute force is
exact and fast enough there; vector_index.py says from where faiss wins (the
offline search uses it there).
"""
from collections import deque
from dataclasses import dataclass, replace
from typing import NamedTuple

from clip_perception.engine.scoring import class_logits
import numpy as np
import torch

NS_PER_SEC = 1_000_000_000


class Regions(NamedTuple):
    """
    Regions of one frame.

    boxes: [N, 4] float xyxy in pixels of the frame; embeddings: [N, D] L2-normalized
    image embeddings (on the CPU).
    """

    boxes: np.ndarray
    embeddings: torch.Tensor

    def scaled(self, scale: tuple[float, float]) -> 'Regions':
        """Regions found on a frame resized by (x, y) `scale`, in the original's pixels."""
        return self._replace(boxes=self.boxes / np.array([*scale, *scale]))


@dataclass(frozen=True)
class StoredFrame:
    """One frame in the memory: where it came from and its regions."""

    camera: str  # the image topic
    stamp_ns: int  # header stamp, nanoseconds
    frame_id: str
    regions: Regions
    robot: str = ''  # the robot that saw it (a fleet's store; '' in a node's own memory)
    run: str = ''  # the bag it was indexed from (a store filled offline; '' when live)


@dataclass(frozen=True)
class Match:
    """A stored frame's best region for a query; box xyxy in its pixels, score in [0, 1]."""

    frame: StoredFrame
    box: tuple[float, float, float, float]
    score: float


@dataclass(frozen=True)
class MemorySettings:
    """
    How much the memory keeps, and how often it stores a frame.

    Periods and ages are measured on the owner's clock at storage (the node's
    clock: its sim time when a bag is replayed with a clock), never on the images'
    stamps: a camera stamping years ahead, or zero, must not empty the memory.
    """

    max_frames: int = 600  # frames kept, over all cameras; the oldest go first
    max_age_sec: float = 0.0  # frames stored longer ago than this go; 0: none
    period_sec: float = 1.0  # per camera: a frame is stored at most this often
    max_bytes: int = 256 * 2 ** 20  # embeddings and boxes kept, in bytes; the oldest go first

    def __post_init__(self):
        if self.max_frames < 1:
            raise ValueError(f'memory max_frames must be >= 1, got {self.max_frames}')
        if self.max_age_sec < 0 or self.period_sec < 0:
            raise ValueError('memory ages and periods must be >= 0 seconds')
        if self.max_bytes < 1:
            raise ValueError(f'memory max_bytes must be >= 1, got {self.max_bytes}')


def frame_bytes(frame: StoredFrame) -> int:
    """Bytes a stored frame's regions take (float16 embeddings and float64 boxes)."""
    regions = frame.regions
    return regions.embeddings.numel() * regions.embeddings.element_size() + regions.boxes.nbytes


class FrameMemory:
    """
    The newest frames' regions and embeddings; not thread-safe (one owner thread).

    Bounded three ways: frames (max_frames), bytes (max_bytes) and age (max_age_sec,
    on the owner's clock); the oldest stored go first.
    """

    def __init__(self, settings: MemorySettings | None = None):
        self.settings = settings or MemorySettings()
        self._frames: deque[tuple[int, StoredFrame]] = deque()  # (clock_ns at storage, frame)
        self._last_stored: dict[str, int] = {}  # camera -> clock_ns of its last stored frame
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._frames)

    @property
    def frames(self) -> list[StoredFrame]:
        """List the stored frames, oldest first."""
        return [frame for _, frame in self._frames]

    @property
    def num_regions(self) -> int:
        return sum(len(frame.regions.boxes) for _, frame in self._frames)

    def due(self, camera: str, clock_ns: int) -> bool:
        """
        Whether a frame of `camera` arriving at `clock_ns` (the owner's clock) is stored.

        True when period_sec has passed since the camera's last stored frame, or the
        clock went backwards (a replayed bag's clock started over).
        """
        last = self._last_stored.get(camera)
        return (last is None or clock_ns < last
                or clock_ns - last >= self.settings.period_sec * NS_PER_SEC)

    def add(self, frame: StoredFrame, clock_ns: int | None = None) -> None:
        """
        Store a frame at `clock_ns` (default: its stamp), then forget what exceeds the bounds.

        Embeddings are kept as float16 (half the memory; rankings are unchanged at
        the precision of a probability).
        """
        clock_ns = frame.stamp_ns if clock_ns is None else clock_ns
        regions = frame.regions
        frame = replace(frame, regions=regions._replace(embeddings=regions.embeddings.half()))
        self._frames.append((clock_ns, frame))
        self.bytes += frame_bytes(frame)
        self.stored(frame.camera, clock_ns)
        self.forget(clock_ns)

    def stored(self, camera: str, clock_ns: int) -> None:
        """Note that a frame of `camera` was stored at `clock_ns` (elsewhere too): see due."""
        self._last_stored[camera] = clock_ns

    def forget(self, clock_ns: int) -> None:
        """Forget the oldest frames beyond max_frames or max_bytes, or older than max_age_sec."""
        s = self.settings
        oldest_kept = clock_ns - int(s.max_age_sec * NS_PER_SEC) if s.max_age_sec > 0 else None
        while self._frames and (len(self._frames) > s.max_frames or self.bytes > s.max_bytes or
                                (oldest_kept is not None and self._frames[0][0] < oldest_kept)):
            self.bytes -= frame_bytes(self._frames.popleft()[1])

    def clear(self) -> None:
        self._frames.clear()
        self._last_stored.clear()
        self.bytes = 0

    def search(self, class_matrix: torch.Tensor, logit_scale: float, top_k: int,
               start_ns: int = 0, end_ns: int = 0, camera: str = '') -> list[Match]:
        """
        Rank the stored frames for a query: best region per frame, best frames first.

        class_matrix: [1 + B, D] L2-normalized, the query then the background prompts.
        start_ns / end_ns: only frames stamped within them; 0 leaves a side open.
        camera: only its frames; empty: every camera's.
        """
        frames = [f for _, f in self._frames
                  if (not start_ns or f.stamp_ns >= start_ns) and
                  (not end_ns or f.stamp_ns <= end_ns) and (not camera or f.camera == camera)
                  and len(f.regions.boxes)]
        return rank_frames(frames, class_matrix, logit_scale, top_k)


def query_label(query: str) -> str:
    """
    Turn a find query into a label: 'a hammer', 'the hammer' and 'hammer' are one query.

    The label then goes through the prompt templates like the node's labels.
    """
    words = query.split()
    if len(words) > 1 and words[0].lower() in ('a', 'an', 'the'):
        words = words[1:]
    return ' '.join(words)


def rank_frames(frames: list[StoredFrame], class_matrix: torch.Tensor, logit_scale: float,
                top_k: int) -> list[Match]:
    """Score every region of `frames` against the query (exactly); best region per frame."""
    if not frames or top_k < 1:
        return []
    embeddings = torch.cat([f.regions.embeddings for f in frames]).float()
    counts = torch.tensor([len(f.regions.boxes) for f in frames])
    scores = class_logits(embeddings, class_matrix.to(embeddings),
                          logit_scale).softmax(dim=-1)[:, 0]
    owner = torch.repeat_interleave(torch.arange(len(frames)), counts)
    best = torch.full((len(frames),), -1.0).scatter_reduce(0, owner, scores, 'amax')
    starts = torch.cumsum(counts, 0) - counts
    matches = []
    for index in torch.argsort(best, descending=True, stable=True)[:top_k].tolist():
        frame = frames[index]
        rows = scores[starts[index]:starts[index] + counts[index]]
        row = int(torch.argmax(rows))
        matches.append(Match(frame, tuple(float(v) for v in frame.regions.boxes[row]),
                             float(rows[row])))
    return matches
