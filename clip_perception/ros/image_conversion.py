"""
sensor_msgs/Image and CompressedImage payloads to frames the engine takes.

No cv_bridge (a ROS 2 build is not always available): raw images are viewed in
place with numpy, respecting the row `step` padding; compressed ones are
decoded with OpenCV. Functions take message fields, not message types, so
this module needs no ROS import.
"""
from dataclasses import dataclass

import cv2
import numpy as np

# Supported encodings and their channel counts (alpha is dropped, mono replicated).
ENCODINGS = {
    'rgb8': 3,
    'bgr8': 3,
    'rgba8': 4,
    'bgra8': 4,
    'mono8': 1,
}


class ImageError(ValueError):
    """An image that cannot be used; the message says what is wrong with it."""


@dataclass(frozen=True)
class Frame:
    """
    A frame for the engine, and how it maps back to the input image.

    pixels: H×W×3 uint8, RGB or (bgr=True) BGR. scale: (x, y) inference pixels per
    input pixel (< 1 when a large image was downscaled); boxes are divided by it.
    """

    pixels: np.ndarray
    bgr: bool
    scale: tuple[float, float] = (1.0, 1.0)


def frame_from_raw(height: int, width: int, encoding: str, step: int, data) -> Frame:
    """View an uncompressed image without copying (a copy only for mono8 and alpha)."""
    channels = ENCODINGS.get(encoding)
    if channels is None:
        raise ImageError(f'unsupported encoding {encoding!r} '
                         f'(supported: {", ".join(ENCODINGS)})')
    if height == 0 or width == 0:
        raise ImageError(f'empty image ({width}×{height})')
    if step < width * channels:
        raise ImageError(f'step {step} is shorter than width × channels = {width * channels}')
    buffer = np.frombuffer(data, dtype=np.uint8)
    if buffer.size < step * (height - 1) + width * channels:
        raise ImageError(f'data has {buffer.size} bytes, {encoding} {width}×{height} with step '
                         f'{step} needs {step * height}')
    if buffer.size >= step * height:
        rows = buffer[:step * height].reshape(height, step)
    else:  # the last row's padding may be missing
        rows = np.lib.stride_tricks.as_strided(buffer, (height, step), (step, 1))
    pixels = rows[:, :width * channels].reshape(height, width, channels)
    if channels == 1:
        return Frame(np.repeat(pixels, 3, axis=2), bgr=False)
    return Frame(pixels[:, :, :3], bgr=encoding.startswith('bgr'))


def frame_from_compressed(fmt: str, data) -> Frame:
    """Decode a CompressedImage payload (jpeg, png, …) with OpenCV."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    if buffer.size == 0:
        raise ImageError('compressed image has no data')
    pixels = cv2.imdecode(buffer, cv2.IMREAD_COLOR)
    if pixels is None:
        raise ImageError(f'could not decode compressed image (format {fmt!r}, '
                         f'{buffer.size} bytes)')
    return Frame(pixels, bgr=True)


def fit_to_pixel_budget(frame: Frame, max_pixels: int) -> Frame:
    """Downscale (area filter) a frame above `max_pixels`; smaller frames pass as is."""
    height, width = frame.pixels.shape[:2]
    if height * width <= max_pixels:
        return frame
    scale = (max_pixels / (height * width)) ** 0.5
    size = (max(1, int(width * scale)), max(1, int(height * scale)))
    pixels = cv2.resize(np.ascontiguousarray(frame.pixels), size, interpolation=cv2.INTER_AREA)
    return Frame(pixels, frame.bgr, scale=(size[0] / width, size[1] / height))
