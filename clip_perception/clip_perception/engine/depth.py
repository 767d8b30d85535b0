"""
Boxes to 3D: a detection's distance from an aligned depth image, then metres.

Depth images are [H, W] float32 metres aligned to the colour image (0 or NaN:
no measurement). Cameras are pinholes, K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]
in pixels, in the camera's optical frame (x right, y down, z forward).
"""
from dataclasses import dataclass

import numpy as np

# Fewer valid depth pixels than this inside a box: no 3D position for it.
MIN_VALID_PIXELS = 5
# The depth extent of a box is at least this many metres (a flat tool still has a size).
MIN_DEPTH_EXTENT = 0.01
# Depths beyond this many metres are no measurement (farther than any depth camera sees;
# a float32 image's 3e38 would otherwise become inf in the box's size).
MAX_DEPTH = 1000.0


@dataclass(frozen=True)
class Pinhole:
    """Intrinsics in pixels."""

    fx: float
    fy: float
    cx: float
    cy: float

    @classmethod
    def from_k(cls, k) -> 'Pinhole':
        """Read the row-major 3×3 K of sensor_msgs/CameraInfo; ValueError if unusable."""
        k = [float(v) for v in k]
        if len(k) != 9 or not (k[0] > 0 and k[4] > 0) or not np.isfinite(k).all():
            raise ValueError(f'camera_info K has no usable focal lengths: {k}')
        return cls(k[0], k[4], k[2], k[5])


@dataclass(frozen=True)
class Box3D:
    """Centre (x, y, z) and size (x, y, z) in metres, axis-aligned in the optical frame."""

    center: tuple[float, float, float]
    size: tuple[float, float, float]

    @property
    def distance(self) -> float:
        """Metres from the camera's centre to the box's centre."""
        return float(np.linalg.norm(self.center))


def box_depths(depth: np.ndarray, box) -> np.ndarray:
    """Return the valid depths (finite, > 0, <= MAX_DEPTH) inside an xyxy pixel box, flat."""
    height, width = depth.shape
    x0, y0 = max(0, int(np.floor(box[0]))), max(0, int(np.floor(box[1])))
    x1, y1 = min(width, int(np.ceil(box[2]))), min(height, int(np.ceil(box[3])))
    values = depth[y0:y1, x0:x1].ravel()
    return values[np.isfinite(values) & (values > 0) & (values <= MAX_DEPTH)]


def box_to_3d(depth: np.ndarray, box, camera: Pinhole) -> Box3D | None:
    """
    Place an xyxy pixel box in 3D; None when it has too few valid depth pixels.

    Its distance is the median of the valid depths inside the box (robust to
    holes and to the bench around a tool); the centre is the box centre's ray at
    that depth; width and height are the box's extent at that depth, and the
    depth extent the 10th-90th percentile spread of the depths (at least
    MIN_DEPTH_EXTENT).
    """
    values = box_depths(depth, box)
    if len(values) < MIN_VALID_PIXELS:
        return None
    z = float(np.median(values))
    near, far = np.percentile(values, [10, 90])
    u, v = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    center = ((u - camera.cx) * z / camera.fx, (v - camera.cy) * z / camera.fy, z)
    size = ((box[2] - box[0]) * z / camera.fx, (box[3] - box[1]) * z / camera.fy,
            max(float(far - near), MIN_DEPTH_EXTENT))
    return Box3D(center, size)
