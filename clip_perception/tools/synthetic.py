"""
Procedural workbench scenes: tools drawn with OpenCV on varied benches.

Deterministic from a seed. Each tool is a silhouette of several parts drawn
in its own frame (x along the tool, -0.5..0.5 of its length) and placed with a
random length, width, rotation, colour and position; the ground-truth box is
the tight box of its drawn pixels. Scenes add bench textures (wood, steel,
cutting mat), a lighting gradient, sensor noise and clutter (screws, nuts,
offcuts) that are not tools.
"""
from dataclasses import dataclass, field
import math

from clip_perception.engine.prompts import DEFAULT_LABELS
import cv2
import numpy as np

# The tools drawn (each has a drawing function below): the node's default labels.
TOOLS = DEFAULT_LABELS
FRAME_SIZE = (240, 320)  # height, width of a scene

_GRIP_COLOURS = [(200, 30, 30), (230, 180, 20), (30, 90, 200), (30, 150, 60), (240, 110, 20),
                 (20, 20, 20), (150, 40, 160)]
_WOOD = [(150, 100, 55), (180, 130, 80), (120, 80, 40)]
_METAL = [(170, 170, 175), (130, 132, 138), (200, 200, 205), (95, 98, 105)]


@dataclass(frozen=True)
class PlacedObject:
    label: str
    box: tuple[int, int, int, int]  # tight xyxy, pixels


@dataclass
class Scene:
    image: np.ndarray  # H×W×3 uint8 RGB
    objects: list[PlacedObject] = field(default_factory=list)


def _pick(rng, items):
    return items[int(rng.integers(len(items)))]


def _shade(colour, rng, spread=25):
    return tuple(min(255, max(0, c + int(rng.integers(-spread, spread + 1)))) for c in colour)


class _Pen:
    """Draws polygons and circles given in the tool's own frame onto a canvas and a mask."""

    def __init__(self, canvas, mask, center, length, angle):
        self.canvas, self.mask = canvas, mask
        self.center = np.asarray(center, float)
        self.length = length
        c, s = math.cos(angle), math.sin(angle)
        self.rotation = np.array([[c, -s], [s, c]])

    def _to_pixels(self, points):
        pts = np.asarray(points, float) * self.length
        return (pts @ self.rotation.T + self.center).round().astype(np.int32)

    def polygon(self, points, colour):
        pts = self._to_pixels(points)
        cv2.fillPoly(self.canvas, [pts], colour, cv2.LINE_AA)
        cv2.fillPoly(self.mask, [pts], 255)

    def rect(self, x0, x1, half_width, colour, y=0.0):
        self.polygon([(x0, y - half_width), (x1, y - half_width), (x1, y + half_width),
                      (x0, y + half_width)], colour)

    def circle(self, x, y, radius, colour):
        center = tuple(int(v) for v in self._to_pixels([(x, y)])[0])
        r = max(1, int(round(radius * self.length)))
        cv2.circle(self.canvas, center, r, colour, -1, cv2.LINE_AA)
        cv2.circle(self.mask, center, r, 255, -1)

    def line(self, x0, y0, x1, y1, colour, width):
        a, b = self._to_pixels([(x0, y0), (x1, y1)])
        cv2.line(self.canvas, tuple(int(v) for v in a), tuple(int(v) for v in b), colour,
                 max(1, int(round(width * self.length))), cv2.LINE_AA)


def _hammer(pen, rng):
    handle = _shade(_pick(rng, _WOOD + _GRIP_COLOURS), rng)
    metal = _shade(_pick(rng, _METAL), rng)
    w = rng.uniform(0.045, 0.07)
    pen.rect(-0.5, 0.32, w, handle)
    pen.rect(-0.5, -0.15, w * 1.25, _shade(handle, rng, 15))  # grip
    head_half = rng.uniform(0.17, 0.24)
    pen.polygon([(0.3, -head_half), (0.5, -head_half * 0.9), (0.5, head_half * 0.35),
                 (0.3, head_half * 0.45)], metal)
    # claw or peen on the other side of the head
    pen.polygon([(0.32, head_half * 0.45), (0.46, head_half * 0.4), (0.42, head_half * 1.1),
                 (0.36, head_half * 1.05)], _shade(metal, rng, 10))


def _screwdriver(pen, rng):
    grip = _shade(_pick(rng, _GRIP_COLOURS), rng)
    metal = _shade(_pick(rng, _METAL), rng)
    w = rng.uniform(0.06, 0.085)
    handle_end = rng.uniform(-0.08, 0.02)
    pen.polygon([(-0.5, -w * 0.8), (-0.46, -w), (handle_end, -w), (handle_end + 0.05, -w * 0.6),
                 (handle_end + 0.05, w * 0.6), (handle_end, w), (-0.46, w), (-0.5, w * 0.8)], grip)
    for x in np.linspace(-0.42, handle_end - 0.06, 4):  # grooves
        pen.line(x, -w * 0.7, x + 0.04, -w * 0.7, _shade(grip, rng, 40), 0.012)
    pen.rect(handle_end + 0.05, 0.47, w * 0.22, metal)
    pen.polygon([(0.47, -w * 0.22), (0.5, -w * 0.1), (0.5, w * 0.1), (0.47, w * 0.22)], metal)


def _wrench(pen, rng):
    metal = _shade(_pick(rng, _METAL), rng)
    w = rng.uniform(0.05, 0.07)
    pen.rect(-0.36, 0.36, w, metal)
    jaw = rng.uniform(0.12, 0.16)
    pen.circle(0.4, 0.0, jaw, metal)
    # open jaw: cut a notch with the bench colour afterwards is not possible on a mask,
    # so draw the jaw as two prongs around a darker gap
    gap = _shade((60, 55, 50), rng, 10)
    pen.rect(0.42, 0.56, jaw * 0.42, gap)
    if rng.random() < 0.5:
        pen.circle(-0.4, 0.0, jaw * 0.9, metal)  # ring end
        pen.circle(-0.4, 0.0, jaw * 0.45, gap)
    else:
        pen.circle(-0.4, 0.0, jaw * 0.85, metal)
        pen.rect(-0.56, -0.44, jaw * 0.35, gap)


def _tape_measure(pen, rng):
    case = _shade(_pick(rng, [(235, 200, 20), (230, 120, 20), (40, 40, 40), (200, 30, 30)]), rng)
    half = 0.5 * rng.uniform(0.75, 0.9)
    r = half * 0.35
    pen.polygon([(-half + r, -half), (half, -half), (half, half), (-half + r, half),
                 (-half, half - r), (-half, -half + r)], case)
    pen.circle(-0.02, 0.0, half * 0.55, _shade(case, rng, 40))
    pen.circle(-0.02, 0.0, half * 0.18, _shade((60, 60, 60), rng))
    tape = _shade((240, 220, 60), rng, 10)
    pen.rect(half, 0.5, 0.05, tape, y=half * 0.8)  # the tape's tongue
    pen.rect(0.45, 0.5, 0.08, _shade(_METAL[0], rng), y=half * 0.8)


def _pliers(pen, rng):
    grip = _shade(_pick(rng, _GRIP_COLOURS), rng)
    metal = _shade(_pick(rng, _METAL), rng)
    spread = rng.uniform(0.12, 0.22)
    w = rng.uniform(0.035, 0.05)
    for side in (-1, 1):
        pen.polygon([(-0.5, side * spread - w), (-0.5, side * spread + w),
                     (0.05, side * 0.03 + w * 0.6), (0.05, side * 0.03 - w * 0.6)], grip)
    pen.circle(0.08, 0.0, 0.07, metal)
    pen.polygon([(0.08, -0.06), (0.5, -0.015), (0.5, 0.015), (0.08, 0.06)], metal)
    pen.line(0.1, 0.0, 0.48, 0.0, _shade((50, 50, 50), rng), 0.01)


_DRAW = {'hammer': _hammer, 'screwdriver': _screwdriver, 'wrench': _wrench,
         'tape measure': _tape_measure, 'pliers': _pliers}
# Length of each tool relative to the scene's tool size (a tape measure is compact).
_RELATIVE_LENGTH = {'hammer': 1.0, 'screwdriver': 0.95, 'wrench': 0.95, 'tape measure': 0.5,
                    'pliers': 0.85}


def bench_background(height, width, rng) -> np.ndarray:
    kind = rng.integers(0, 3)
    if kind == 0:  # wood with grain
        base = np.array(_shade(_pick(rng, _WOOD), rng, 30), float)
        y = np.arange(height)[:, None]
        grain = np.sin(y / rng.uniform(3, 9) + rng.normal(0, 1.5, (1, width)).cumsum(1) * 0.05)
        image = base + grain[..., None] * rng.uniform(6, 16)
    elif kind == 1:  # steel
        base = np.array(_shade(_pick(rng, _METAL), rng, 20), float)
        image = np.broadcast_to(base, (height, width, 3)) + rng.normal(
            0, 4, (height, 1, 1)).repeat(width, 1)
    else:  # green or blue cutting mat with a grid
        base = np.array(_shade(_pick(rng, [(40, 110, 70), (40, 70, 120), (60, 60, 60)]), rng),
                        float)
        image = np.broadcast_to(base, (height, width, 3)).copy()
        step = int(rng.integers(14, 30))
        image[::step, :] += 35
        image[:, ::step] += 35
    low, high = rng.uniform(0.7, 1.0), rng.uniform(1.0, 1.3)
    if rng.random() < 0.5:  # light falling off left to right, or top to bottom
        gradient = np.linspace(low, high, width)[None, :, None]
    else:
        gradient = np.linspace(low, high, height)[:, None, None]
    image = image * gradient
    return np.clip(image, 0, 255).astype(np.uint8)


def add_clutter(image, rng, count):
    height, width = image.shape[:2]
    short = min(height, width)
    for _ in range(count):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        colour = _shade(_pick(rng, _METAL + [(90, 70, 50), (200, 190, 170)]), rng)
        kind = rng.integers(0, 3)
        size = max(2, int(short * rng.uniform(0.01, 0.035)))
        if kind == 0:  # screw / nut
            cv2.circle(image, (x, y), size, colour, -1, cv2.LINE_AA)
        elif kind == 1:  # offcut
            angle = rng.uniform(0, math.pi)
            dx, dy = int(math.cos(angle) * size * 4), int(math.sin(angle) * size * 4)
            cv2.line(image, (x - dx, y - dy), (x + dx, y + dy), colour, max(1, size // 2),
                     cv2.LINE_AA)
        else:  # washer
            cv2.circle(image, (x, y), size, colour, max(1, size // 3), cv2.LINE_AA)


def draw_tool(image, label, center, length, angle, rng, occupied=()) -> PlacedObject | None:
    """
    Draw `label` on `image`, unless its box would overlap one in `occupied`.

    Returns its tight box, or None when nothing was drawn (overlap, or not visible).
    """
    mask = np.zeros(image.shape[:2], np.uint8)
    canvas = image.copy()
    _DRAW[label](_Pen(canvas, mask, center, length, angle), rng)
    x, y, w, h = cv2.boundingRect(mask)  # of the nonzero pixels
    if w == 0:
        return None
    box = (x, y, x + w, y + h)
    if any(_overlap(box, other) for other in occupied):
        return None
    # a soft shadow under the tool, then the tool itself
    shadow = cv2.GaussianBlur(mask, (0, 0), max(1.0, length * 0.02))
    shift = max(1, int(length * 0.02))
    shadow = np.roll(np.roll(shadow, shift, 0), shift, 1)
    image[:] = (image * (1 - shadow[..., None] / 255.0 * 0.35)).astype(np.uint8)
    image[mask > 0] = canvas[mask > 0]
    return PlacedObject(label, box)


def finish(image, rng) -> np.ndarray:
    noisy = image.astype(np.float32) + rng.normal(0, rng.uniform(1, 5), image.shape)
    if rng.random() < 0.3:
        noisy = cv2.GaussianBlur(noisy, (0, 0), rng.uniform(0.5, 1.2))
    return np.clip(noisy, 0, 255).astype(np.uint8)


def make_scene(rng: np.random.Generator, height: int = FRAME_SIZE[0], width: int = FRAME_SIZE[1],
               labels=TOOLS, count: int | None = None, tool_size=(0.35, 0.65),
               clutter=(0, 8)) -> Scene:
    """
    Draw a bench with `count` (default 1–3) non-overlapping tools of `labels`.

    tool_size: range of a tool's length as a fraction of the short side.
    """
    image = bench_background(height, width, rng)
    add_clutter(image, rng, int(rng.integers(clutter[0], clutter[1] + 1)))
    count = int(rng.integers(1, 4)) if count is None else count
    objects = []
    short = min(height, width)
    for label in (_pick(rng, labels) for _ in range(count)):
        for _attempt in range(20):
            length = short * rng.uniform(*tool_size) * _RELATIVE_LENGTH[label]
            margin = length * 0.5 + 2  # the whole tool stays in the frame
            center = (rng.uniform(margin, width - margin), rng.uniform(margin, height - margin))
            placed = draw_tool(image, label, center, length, rng.uniform(0, 2 * math.pi), rng,
                               [o.box for o in objects])
            if placed:
                objects.append(placed)
                break
    return Scene(finish(image, rng), objects)


def _overlap(a, b) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
