"""
sensor_msgs/Image and CompressedImage payloads to frames the engine takes.

No cv_bridge (a ROS 2 build is not always available): raw images are viewed in
place with numpy, respecting the row `step` padding; compressed ones are
decoded with Pillow. Functions take message fields, not message types, so
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
    """An image that cannot be used; the message says what is wrong, `kind` in a word."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind  # encoding, empty, layout, truncated, size or undecodable


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
                         f'(supported: {", ".join(ENCODINGS)})', 'encoding')
    if height == 0 or width == 0:
        raise ImageError(f'empty image ({width}×{height})', 'empty')
    if step < width * channels:
        raise ImageError(f'step {step} is shorter than width × channels = {width * channels}',
                         'layout')
    rows = _rows(data, height, width * channels, step, encoding)
    pixels = rows.reshape(height, width, channels)
    if channels == 1:
        return Frame(np.repeat(pixels, 3, axis=2), bgr=False)
    return Frame(pixels[:, :, :3], bgr=encoding.startswith('bgr'))


def _rows(data, height: int, row_bytes: int, step: int, encoding: str) -> np.ndarray:
    """[height, row_bytes] uint8 view of an image's rows without their `step` padding."""
    buffer = np.frombuffer(data, dtype=np.uint8)
    if buffer.size < step * (height - 1) + row_bytes:
        raise ImageError(f'data has {buffer.size} bytes, {encoding} {row_bytes} bytes × '
                         f'{height} rows with step {step} needs {step * height}', 'truncated')
    if buffer.size >= step * height:
        rows = buffer[:step * height].reshape(height, step)
    else:  # the last row's padding may be missing
        rows = np.lib.stride_tricks.as_strided(buffer, (height, step), (step, 1))
    return rows[:, :row_bytes]


# Depth encodings: numpy type of a pixel and metres per unit.
DEPTH_ENCODINGS = {'16UC1': ('u2', 0.001), 'mono16': ('u2', 0.001), '32FC1': ('f4', 1.0)}


def depth_from_raw(height: int, width: int, encoding: str, step: int, is_bigendian: int,
                   data) -> np.ndarray:
    """
    Read a depth image (16UC1 millimetres or 32FC1 metres) as [H, W] float32 metres.

    0 and NaN stay as they are: no measurement there.
    """
    if encoding not in DEPTH_ENCODINGS:
        raise ImageError(f'unsupported depth encoding {_short(encoding)} (supported: '
                         f'{", ".join(DEPTH_ENCODINGS)})', 'encoding')
    if height == 0 or width == 0:
        raise ImageError(f'empty depth image ({width}×{height})', 'empty')
    kind, metres = DEPTH_ENCODINGS[encoding]
    dtype = np.dtype(('>' if is_bigendian else '<') + kind)
    if step < width * dtype.itemsize:
        raise ImageError(f'step {step} is shorter than width × {dtype.itemsize} bytes',
                         'layout')
    rows = np.ascontiguousarray(_rows(data, height, width * dtype.itemsize, step, encoding))
    return rows.view(dtype).reshape(height, width).astype(np.float32) * np.float32(metres)


def frame_from_compressed(fmt: str, data, max_pixels: int) -> Frame:
    """
    Decode a CompressedImage payload (jpeg, png, …) with Pillow, within a pixel budget.

    The size comes from the header first. A JPEG over `max_pixels` is decoded at
    1/2, 1/4 or 1/8 of its size (its Frame's scale says so); any other image over
    it is refused before a pixel is decoded. Pillow raises on damaged data where
    libjpeg through OpenCV would print a warning per frame and go on.
    """
    from PIL import Image, UnidentifiedImageError
    buffer = np.frombuffer(data, dtype=np.uint8)
    if buffer.size == 0:
        raise ImageError('compressed image has no data', 'empty')
    try:
        with Image.open(io.BytesIO(buffer.tobytes())) as image:
            width, height = image.size
            if width * height > max_pixels:
                factor = next((f for f in (2, 4, 8) if image.format == 'JPEG' and
                               -(-width // f) * -(-height // f) <= max_pixels), 0)
                if not factor:
                    raise ImageError(f'{image.format} image of {width}×{height} exceeds '
                                     f'max_image_pixels={max_pixels}: not decoded', 'size')
                image.draft('RGB', (-(-width // factor), -(-height // factor)))
            pixels = np.array(image.convert('RGB'))  # writable: torch warns on read-only
    except Image.DecompressionBombError as error:
        raise ImageError(f'compressed image refused before decoding: {error}',
                         'size') from error
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as error:
        raise ImageError(f'could not decode compressed image (format {_short(fmt)}, '
                         f'{buffer.size} bytes): {error}', 'undecodable') from error
    return Frame(pixels, bgr=False, scale=(pixels.shape[1] / width, pixels.shape[0] / height))


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
