"""
The sliding-window grid: where in a frame the crops are cut.

Boxes are xyxy in pixels of the original frame (x0, y0 inclusive; x1, y1
exclusive). Every window lies inside the frame, and the full frame is always
one of them, so tiny or odd-sized frames still get a window.
"""
from dataclasses import dataclass
import math

import numpy as np

# Width/height of a window: beyond these a window is a line, not a view of an object.
ASPECT_RATIO_RANGE = (0.01, 100.0)


@dataclass(frozen=True)
class WindowSpec:
    """
    Window sizes and spacing.

    scales: window side per scale; a value <= 1 is a fraction of the frame's
        short side, a value > 1 a size in pixels.
    aspect_ratios: width / height of the windows (area kept equal to side²).
    overlap: fraction [0, 1) by which neighbouring windows of one size overlap.
    """

    scales: tuple[float, ...] = (0.8, 0.55, 0.35)
    aspect_ratios: tuple[float, ...] = (1.0,)
    overlap: float = 0.5

    def __post_init__(self):
        if not self.scales or not all(math.isfinite(s) and s > 0 for s in self.scales):
            raise ValueError('window scales must be positive finite numbers, got '
                             f'{list(self.scales)}')
        low, high = ASPECT_RATIO_RANGE
        if not self.aspect_ratios or not all(low <= a <= high for a in self.aspect_ratios):
            raise ValueError(f'window aspect ratios must lie in [{low}, {high}], got '
                             f'{list(self.aspect_ratios)}')
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f'window overlap must lie in [0, 1), got {self.overlap}')


def _count(length: int, window: int, stride: float) -> int:
    """How many windows of `window` pixels fit `length` at `stride` (_positions' count)."""
    return 1 if window >= length else math.ceil((length - window) / max(stride, 1.0)) + 1


def _positions(length: int, window: int, stride: float) -> np.ndarray:
    """Evenly spaced window starts from 0 to length - window, both ends included."""
    if window >= length:
        return np.zeros(1, dtype=np.int64)
    return np.round(np.linspace(0, length - window, _count(length, window, stride))).astype(
        np.int64)


def _window_sizes(height: int, width: int, spec: WindowSpec):
    """(width, height, x stride, y stride) in pixels of each scale and aspect ratio."""
    short_side = min(height, width)
    for scale in spec.scales:
        side = scale * short_side if scale <= 1.0 else scale
        for aspect in spec.aspect_ratios:
            win_w = int(min(width, max(1, round(side * math.sqrt(aspect)))))
            win_h = int(min(height, max(1, round(side / math.sqrt(aspect)))))
            yield win_w, win_h, win_w * (1.0 - spec.overlap), win_h * (1.0 - spec.overlap)


def window_count(height: int, width: int, spec: WindowSpec) -> int:
    """How many windows window_grid gives at most, computed without building them."""
    return 1 + sum(_count(width, win_w, stride_x) * _count(height, win_h, stride_y)
                   for win_w, win_h, stride_x, stride_y in _window_sizes(height, width, spec))


def window_grid(height: int, width: int, spec: WindowSpec) -> np.ndarray:
    """[N, 4] int64 xyxy windows for a height×width frame, full frame first, no duplicates."""
    boxes = [np.array([[0, 0, width, height]], dtype=np.int64)]
    for win_w, win_h, stride_x, stride_y in _window_sizes(height, width, spec):
        x0, y0 = np.meshgrid(_positions(width, win_w, stride_x),
                             _positions(height, win_h, stride_y), indexing='xy')
        x0, y0 = x0.ravel(), y0.ravel()
        boxes.append(np.stack([x0, y0, x0 + win_w, y0 + win_h], axis=1))
    grid = np.concatenate(boxes)
    _, first = np.unique(grid, axis=0, return_index=True)
    return grid[np.sort(first)]
