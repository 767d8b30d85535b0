"""
sensor_msgs/Image and CompressedImage payloads to frames the engine takes.

No cv_bridge (a ROS 2 build is not always available): raw images are viewed in
place with numpy, respecting the row `step` padding; compressed ones are
decoded with OpenCV. Functions take message fields, not message types, so
this module needs no ROS import.
A compressed image's size is read from its header before anything is decoded,
so a small file that would decode to gigabytes is refused first.
"""
from dataclasses import dataclass
import io

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
        raise ImageError(f'unsupported encoding {_short(encoding)} '
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


def frame_from_compressed(fmt: str, data, max_pixels: int) -> Frame:
    """
    Decode a CompressedImage payload (jpeg, png, …) with OpenCV, within a pixel budget.

    The size comes from the header first. An image over `max_pixels` is decoded at
    1/2, 1/4 or 1/8 of its size where the format allows it (JPEG), its Frame's
    scale saying so; otherwise it is refused before any pixel is decoded.
    """
    buffer = np.frombuffer(data, dtype=np.uint8)
    if buffer.size == 0:
        raise ImageError('compressed image has no data')
    width, height, kind = _encoded_size(fmt, buffer)
    reduction = 1
    if width * height > max_pixels:
        reduction = next((f for f in _REDUCED_READS
                          if kind == 'JPEG' and -(-width // f) * -(-height // f) <= max_pixels),
                         0)
        if not reduction:
            raise ImageError(f'{kind} image of {width}×{height} exceeds max_image_pixels='
                             f'{max_pixels}: not decoded')
    pixels = cv2.imdecode(buffer, _REDUCED_READS.get(reduction, cv2.IMREAD_COLOR))
    if pixels is None:
        raise ImageError(f'could not decode compressed image (format {_short(fmt)}, '
                         f'{buffer.size} bytes)')
    return Frame(pixels, bgr=True, scale=(pixels.shape[1] / width, pixels.shape[0] / height))


# Decoding at a reduced size: the factor and its OpenCV flag.
_REDUCED_READS = {2: cv2.IMREAD_REDUCED_COLOR_2, 4: cv2.IMREAD_REDUCED_COLOR_4,
                  8: cv2.IMREAD_REDUCED_COLOR_8}


def _encoded_size(fmt: str, buffer: np.ndarray) -> tuple[int, int, str]:
    """(width, height, format name) from an encoded image's header (Pillow reads only that)."""
    from PIL import Image, UnidentifiedImageError
    try:
        with Image.open(io.BytesIO(buffer.tobytes())) as image:
            return image.size[0], image.size[1], image.format or '?'
    except Image.DecompressionBombError as error:
        raise ImageError(f'compressed image refused before decoding: {error}') from error
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise ImageError(f'could not decode compressed image (format {_short(fmt)}, '
                         f'{buffer.size} bytes): {error}') from error


def _short(text: str, limit: int = 40) -> str:
    """Quote a string from a message, cut to `limit` characters (a log line stays short)."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f'… ({len(text)} chars)'


def fit_to_pixel_budget(frame: Frame, max_pixels: int) -> Frame:
    """Downscale (area filter) a frame above `max_pixels`; smaller frames pass as is."""
    height, width = frame.pixels.shape[:2]
    if height * width <= max_pixels:
        return frame
    scale = (max_pixels / (height * width)) ** 0.5
    size = (max(1, int(width * scale)), max(1, int(height * scale)))
    pixels = cv2.resize(np.ascontiguousarray(frame.pixels), size, interpolation=cv2.INTER_AREA)
    return Frame(pixels, frame.bgr, scale=(frame.scale[0] * size[0] / width,
                                           frame.scale[1] * size[1] / height))
