"""
Domain-randomized workbench scenes: the training data's generator.

Deterministic from a seed. The idea is domain randomization (Tobin et al.,
2017): vary everything that does not decide what a tool is — sub-type,
proportions, colours, materials, bench, light, shadow, blur, noise,
compression, clutter, occlusion — so that a model trained on it cannot rely on
one drawing style and has to learn the shapes.

Each tool is a silhouette of several parts drawn in its own frame (x along the
tool, -0.5..0.5 of its length; y across it, scaled by a random girth) with
sub-types (TOOL_KINDS). Parts get any colour or a metal, then shading across
the tool, sometimes an outline. The ground-truth box is the tight box of the
tool's visible pixels. Benches are procedural (wood grain, planks, concrete,
brushed metal, fabric, cutting mats, pegboard, painted boards)
or tinted photographed textures (scikit-image's brick, gravel and grass).
Clutter that is not a tool (screws, nuts, washers, offcuts, pencils, cables,
rags, paper, sockets, bits) lies under and over the tools.

The held-out evaluation style (`heldout_style.py`) is a separate renderer that
nothing here, nor anything in training, imports.
"""
from dataclasses import dataclass, field
import functools
import math

from clip_perception.engine.prompts import DEFAULT_LABELS
import cv2
import numpy as np

# The tools drawn (each has a drawing function below): the node's default labels.
TOOLS = DEFAULT_LABELS
FRAME_SIZE = (240, 320)  # height, width of a scene

_WOOD = [(150, 100, 55), (180, 130, 80), (120, 80, 40), (205, 165, 115), (90, 60, 35)]
_METAL = [(170, 170, 175), (130, 132, 138), (200, 200, 205), (95, 98, 105), (185, 160, 110)]


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


def _any_colour(rng, saturation=(0.3, 1.0), value=(0.15, 0.95)):
    """Pick a colour from anywhere in HSV (paint, plastic, rubber)."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(*saturation) * 255,
                      rng.uniform(*value) * 255]]], np.uint8)
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])


def _metal(rng):
    return _shade(_pick(rng, _METAL), rng, 30) if rng.random() < 0.8 else _any_colour(rng)


def _grip(rng):
    return _shade(_pick(rng, _WOOD), rng) if rng.random() < 0.2 else _any_colour(rng)


class _Pen:
    """Draws parts given in the tool's own frame onto a canvas and a mask."""

    def __init__(self, canvas, mask, center, length, angle, girth):
        self.canvas, self.mask = canvas, mask
        self.center = np.asarray(center, float)
        self.length = length
        self.girth = girth  # y (across the tool) is scaled by this
        c, s = math.cos(angle), math.sin(angle)
        self.rotation = np.array([[c, -s], [s, c]])

    def _to_pixels(self, points):
        pts = np.asarray(points, float) * [1.0, self.girth] * self.length
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
        r = max(1, int(round(radius * self.length * math.sqrt(self.girth))))
        cv2.circle(self.canvas, center, r, colour, -1, cv2.LINE_AA)
        cv2.circle(self.mask, center, r, 255, -1)

    def line(self, x0, y0, x1, y1, colour, width):
        a, b = self._to_pixels([(x0, y0), (x1, y1)])
        cv2.line(self.canvas, tuple(int(v) for v in a), tuple(int(v) for v in b), colour,
                 max(1, int(round(width * self.length))), cv2.LINE_AA)


def _hammer(pen, rng):
    kind = _pick(rng, TOOL_KINDS['hammer'])
    handle = _grip(rng) if rng.random() < 0.6 else _shade(_pick(rng, _WOOD), rng)
    metal = _metal(rng)
    w = rng.uniform(0.04, 0.075)
    neck = rng.uniform(0.25, 0.36)
    pen.rect(-0.5, neck + 0.02, w, handle)
    if rng.random() < 0.6:  # a rubber grip in another colour
        pen.rect(-0.5, rng.uniform(-0.25, -0.05), w * rng.uniform(1.1, 1.4), _grip(rng))
    head_half = rng.uniform(0.15, 0.26)
    face = rng.uniform(0.07, 0.11)
    x0, x1 = neck, min(0.5, neck + 2 * face)
    if kind == 'claw':
        pen.polygon([(x0, -head_half), (x1, -head_half * 0.9), (x1, head_half * 0.35),
                     (x0, head_half * 0.45)], metal)
        pen.polygon([(x0 + 0.02, head_half * 0.4), (x1 - 0.02, head_half * 0.35),
                     (x1 - rng.uniform(0.0, 0.05), head_half * 1.15),
                     (x0 + 0.04, head_half * 1.05)], _shade(metal, rng, 10))
    elif kind == 'ball-pein':
        pen.rect(x0, x1, head_half * 0.35, metal, y=-head_half * 0.35)
        pen.rect(x0 + 0.01, x1 - 0.01, head_half * 0.3, metal, y=head_half * 0.3)
        pen.circle((x0 + x1) / 2, head_half * 0.75, (x1 - x0) * 0.55, _shade(metal, rng, 10))
        pen.rect(x0 - 0.01, x1 + 0.01, head_half * 0.12, metal, y=-head_half * 0.75)
    else:  # mallet: one block, both faces flat
        pen.rect(x0 - 0.02, x1 + 0.03, head_half, _grip(rng) if rng.random() < 0.5 else metal)


def _screwdriver(pen, rng):
    kind = _pick(rng, TOOL_KINDS['screwdriver'])
    grip, metal = _grip(rng), _metal(rng)
    w = rng.uniform(0.05, 0.09)
    handle_end = rng.uniform(-0.15, 0.05)
    pen.polygon([(-0.5, -w * 0.8), (-0.46, -w), (handle_end, -w), (handle_end + 0.05, -w * 0.6),
                 (handle_end + 0.05, w * 0.6), (handle_end, w), (-0.46, w), (-0.5, w * 0.8)], grip)
    if rng.random() < 0.5:  # a band or a second colour along the grip
        pen.rect(-0.5 + rng.uniform(0.05, 0.15), handle_end - 0.04, w * 0.45, _any_colour(rng))
    for x in np.linspace(-0.42, handle_end - 0.06, int(rng.integers(0, 6))):  # grooves
        pen.line(x, -w * 0.7, x + 0.04, -w * 0.7, _shade(grip, rng, 40), 0.012)
    shaft = w * rng.uniform(0.15, 0.3)
    pen.rect(handle_end + 0.05, 0.47, shaft, metal)
    if kind == 'flat':
        pen.polygon([(0.46, -shaft), (0.5, -shaft * 1.6), (0.5, shaft * 1.6), (0.46, shaft)],
                    metal)
    else:  # cross-head: a pointed tip with a dark cross
        pen.polygon([(0.46, -shaft), (0.5, -shaft * 0.3), (0.5, shaft * 0.3), (0.46, shaft)],
                    metal)
        pen.line(0.465, 0.0, 0.5, 0.0, _shade((50, 50, 50), rng), 0.006)


def _wrench(pen, rng):
    kind = _pick(rng, TOOL_KINDS['wrench'])
    metal = _metal(rng)
    gap = _shade((60, 55, 50), rng, 15)
    w = rng.uniform(0.045, 0.075)
    jaw = rng.uniform(0.11, 0.17)
    if kind == 'adjustable':
        jaw *= 1.25
        pen.rect(-0.5, 0.25, w, metal)
        if rng.random() < 0.5:
            pen.rect(-0.5, -0.15, w * 1.1, _grip(rng))  # a dipped handle
        pen.circle(-0.47, 0.0, w * 0.5, gap)  # hanging hole
        pen.polygon([(0.2, -jaw * 1.2), (0.5, -jaw * 1.1), (0.5, -jaw * 0.25),
                     (0.3, -jaw * 0.25), (0.3, jaw * 0.3), (0.2, jaw * 0.5)], metal)
        pen.rect(0.36, 0.5, jaw * 0.28, _shade(metal, rng, 15), y=jaw * 0.55)  # moving jaw
        pen.rect(0.22, 0.34, jaw * 0.15, _shade(gap, rng, 10), y=jaw * 0.25)  # worm screw
        return
    pen.rect(-0.36, 0.36, w, metal)
    pen.circle(0.4, 0.0, jaw, metal)  # open end: two prongs around a darker gap
    pen.rect(0.42, 0.56, jaw * 0.42, gap)
    if kind == 'ring':  # combination: ring at the other end
        pen.circle(-0.4, 0.0, jaw * 0.9, metal)
        pen.circle(-0.4, 0.0, jaw * 0.45, gap)
    else:  # double open-ended
        pen.circle(-0.4, 0.0, jaw * 0.85, metal)
        pen.rect(-0.56, -0.44, jaw * 0.35, gap)


def _tape_measure(pen, rng):
    kind = _pick(rng, TOOL_KINDS['tape measure'])
    case = _any_colour(rng) if rng.random() < 0.6 else _shade(
        _pick(rng, [(235, 200, 20), (230, 120, 20), (40, 40, 40), (200, 30, 30)]), rng)
    tape = _shade(_pick(rng, [(240, 220, 60), (235, 235, 225), (230, 200, 40)]), rng, 10)
    if kind == 'blade out':  # a compact case at one end, the blade along the tool
        half = rng.uniform(0.14, 0.2)
        cx = -0.5 + half
        pen.rect(cx, 0.48, half * 0.3, tape, y=half * 0.6)
        for x in np.arange(cx + half, 0.48, rng.uniform(0.03, 0.06)):
            pen.line(x, half * 0.35, x, half * 0.6, (40, 40, 40), 0.004)
        pen.rect(0.47, 0.5, half * 0.42, _metal(rng), y=half * 0.6)
    else:
        half = 0.5 * rng.uniform(0.75, 0.9)
        cx = -0.02
        pen.rect(half - 0.02, 0.5, 0.05, tape, y=half * 0.8)  # the tongue
        pen.rect(0.45, 0.5, 0.08, _metal(rng), y=half * 0.8)
    r = half * rng.uniform(0.15, 0.5)
    pen.polygon([(cx - half + r, -half), (cx + half, -half), (cx + half, half),
                 (cx - half + r, half), (cx - half, half - r), (cx - half, -half + r)], case)
    pen.circle(cx, 0.0, half * rng.uniform(0.4, 0.6), _shade(case, rng, 50))
    if rng.random() < 0.7:
        pen.circle(cx, 0.0, half * 0.18, _shade((60, 60, 60), rng))
    if rng.random() < 0.5:  # lock button
        pen.rect(cx + half * 0.3, cx + half * 0.8, half * 0.12, _any_colour(rng), y=-half * 0.85)


def _pliers(pen, rng):
    kind = _pick(rng, TOOL_KINDS['pliers'])
    grip, metal = _grip(rng), _metal(rng)
    spread = rng.uniform(0.08, 0.24)
    w = rng.uniform(0.03, 0.055)
    pivot = rng.uniform(0.0, 0.15)
    for side in (-1, 1):
        pen.polygon([(-0.5, side * spread - w), (-0.5, side * spread + w),
                     (pivot - 0.03, side * 0.03 + w * 0.6), (pivot - 0.03, side * 0.03 - w * 0.6)],
                    grip)
        pen.line(pivot - 0.05, side * 0.03, pivot, 0.0, metal, 0.03)
    pen.circle(pivot, 0.0, rng.uniform(0.05, 0.08), metal)
    if kind == 'needle-nose':
        pen.polygon([(pivot, -0.05), (0.5, -0.008), (0.5, 0.008), (pivot, 0.05)], metal)
    else:  # slip-joint: short broad jaws
        pen.polygon([(pivot, -0.07), (0.44, -0.05), (0.5, -0.015), (0.5, 0.015), (0.44, 0.05),
                     (pivot, 0.07)], metal)
        pen.circle(pivot + 0.12, 0.0, 0.025, _shade((50, 50, 50), rng))
    pen.line(pivot + 0.02, 0.0, 0.48, 0.0, _shade((50, 50, 50), rng), 0.008)


_DRAW = {'hammer': _hammer, 'screwdriver': _screwdriver, 'wrench': _wrench,
         'tape measure': _tape_measure, 'pliers': _pliers}
# The sub-types drawn of each tool.
TOOL_KINDS = {'hammer': ('claw', 'ball-pein', 'mallet'),
              'screwdriver': ('flat', 'cross-head'),
              'wrench': ('open', 'ring', 'adjustable'),
              'tape measure': ('blade in', 'blade out'),
              'pliers': ('slip-joint', 'needle-nose')}
# Length of each tool relative to the scene's tool size (a tape measure is compact).
RELATIVE_LENGTH = {'hammer': 1.0, 'screwdriver': 0.95, 'wrench': 0.95, 'tape measure': 0.55,
                   'pliers': 0.85}


# Benches ------------------------------------------------------------------------------------

def _smooth_noise(height, width, rng, scale):
    """Value noise in [-1, 1] with features about `scale` pixels large."""
    small = rng.normal(0, 1, (max(2, height // scale + 2), max(2, width // scale + 2)))
    return np.clip(cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC) / 1.5, -1, 1)


def _wood(height, width, rng):
    base = np.array(_shade(_pick(rng, _WOOD), rng, 35), float)
    across, along = (height, width) if rng.random() < 0.5 else (width, height)
    y = np.arange(across)[:, None]
    grain = np.sin(y / rng.uniform(2, 9) + rng.normal(0, 1.5, (1, along)).cumsum(1) * 0.05
                   + _smooth_noise(across, along, rng, 40) * 3)
    image = base + grain[..., None] * rng.uniform(5, 20)
    return image if across == height else image.transpose(1, 0, 2)


def _planks(height, width, rng):
    image = _wood(height, width, rng)
    vertical = rng.random() < 0.5
    size = width if vertical else height
    edges = np.cumsum(rng.uniform(25, 70, 12)).astype(int)
    for start, end in zip(np.r_[0, edges], edges):
        if start >= size:
            break
        part = (slice(None), slice(start, end)) if vertical else (slice(start, end), slice(None))
        image[part] *= rng.uniform(0.8, 1.2)
        seam = (slice(None), slice(end, end + 2)) if vertical else (slice(end, end + 2),)
        image[seam] *= 0.5
    return image


def _concrete(height, width, rng):
    grey = rng.uniform(90, 190)
    base = np.array([grey, grey, grey]) * rng.uniform(0.9, 1.1, 3)
    noise = (_smooth_noise(height, width, rng, 30) * rng.uniform(8, 25)
             + rng.normal(0, rng.uniform(4, 12), (height, width)))
    return base + noise[..., None]


def _metal_sheet(height, width, rng):
    base = np.array(_shade(_pick(rng, _METAL), rng, 25), float)
    streaks = rng.normal(0, rng.uniform(2, 8), (height, 1)).repeat(width, 1)
    if rng.random() < 0.5:
        streaks = rng.normal(0, rng.uniform(2, 8), (1, width)).repeat(height, 0)
    image = base + streaks[..., None]
    for _ in range(int(rng.integers(0, 12))):  # scratches
        x, y = rng.integers(0, width), rng.integers(0, height)
        a = rng.uniform(0, math.pi)
        n = rng.uniform(10, 60)
        cv2.line(image, (int(x), int(y)), (int(x + n * math.cos(a)), int(y + n * math.sin(a))),
                 tuple(float(c) for c in base + rng.uniform(-40, 40)), 1, cv2.LINE_AA)
    return image


def _fabric(height, width, rng):
    base = np.array(_any_colour(rng, (0.1, 0.7), (0.2, 0.8)), float)
    period = rng.uniform(2.5, 6)
    yy, xx = np.mgrid[0:height, 0:width]
    weave = np.sin(xx / period * math.pi) * np.sin(yy / period * math.pi)
    image = base + (weave * rng.uniform(5, 18) + _smooth_noise(height, width, rng, 50) * 10)[
        ..., None]
    return image


def _cutting_mat(height, width, rng):
    base = np.array(_shade(_pick(rng, [(40, 110, 70), (40, 70, 120), (60, 60, 60),
                                       (150, 40, 40)]), rng), float)
    image = np.broadcast_to(base, (height, width, 3)).copy()
    step = int(rng.integers(10, 30))
    line = rng.uniform(20, 50)
    image[int(rng.integers(step))::step, :] += line
    image[:, int(rng.integers(step))::step] += line
    return image


def _pegboard(height, width, rng):
    image = np.broadcast_to(np.array(_shade(_pick(rng, _WOOD + [(210, 210, 205)]), rng, 30),
                                     float), (height, width, 3)).copy()
    step = int(rng.integers(12, 26))
    radius = max(1, int(step * rng.uniform(0.1, 0.2)))
    dark = tuple(float(v) for v in image[0, 0] * 0.3)
    for y in range(int(rng.integers(step)), height, step):
        for x in range(int(rng.integers(step)), width, step):
            cv2.circle(image, (x, y), radius, dark, -1, cv2.LINE_AA)
    return image


def _painted(height, width, rng):
    base = np.array(_any_colour(rng, (0.0, 0.6), (0.3, 0.95)), float)
    return base + (_smooth_noise(height, width, rng, 60) * rng.uniform(3, 15)
                   + rng.normal(0, 3, (height, width)))[..., None]


@functools.cache
def _photographs() -> tuple[np.ndarray, ...]:
    """Photographed textures that ship with scikit-image (greyscale, 512×512)."""
    from skimage import data
    return tuple(np.asarray(f(), np.float64) for f in (data.brick, data.gravel, data.grass))


def _photograph(height, width, rng):
    texture = _pick(rng, _photographs())
    scale = rng.uniform(0.4, 1.0)
    size = (int(texture.shape[1] * scale), int(texture.shape[0] * scale))
    texture = cv2.resize(texture, size, interpolation=cv2.INTER_AREA)
    y = int(rng.integers(0, max(1, texture.shape[0] - height)))
    x = int(rng.integers(0, max(1, texture.shape[1] - width)))
    patch = cv2.resize(texture[y:y + height, x:x + width], (width, height))
    contrast = rng.uniform(0.3, 0.9)
    tint = np.array(_any_colour(rng, (0.0, 0.5), (0.4, 0.9)), float)
    return tint + (patch - patch.mean())[..., None] * contrast


BENCHES = {'wood': _wood, 'planks': _planks, 'concrete': _concrete, 'metal': _metal_sheet,
           'fabric': _fabric, 'cutting mat': _cutting_mat, 'pegboard': _pegboard,
           'painted': _painted, 'photograph': _photograph}


def bench_background(height, width, rng) -> np.ndarray:
    """Draw a random bench (BENCHES) as float RGB, before lighting."""
    return np.ascontiguousarray(BENCHES[_pick(rng, list(BENCHES))](height, width, rng),
                                np.float64)


def lighting(height, width, rng) -> np.ndarray:
    """[H, W, 3] multiplicative light: a gradient or a spot, and a colour cast."""
    yy, xx = np.mgrid[0:height, 0:width] / max(height, width)
    if rng.random() < 0.6:
        angle = rng.uniform(0, 2 * math.pi)
        ramp = xx * math.cos(angle) + yy * math.sin(angle)
        ramp = (ramp - ramp.min()) / max(1e-6, np.ptp(ramp))
        light = rng.uniform(0.6, 1.0) + ramp * rng.uniform(0.0, 0.5)
    else:
        cx, cy = rng.uniform(0, width / max(height, width)), rng.uniform(0, 1)
        distance = np.hypot(xx - cx, yy - cy)
        light = rng.uniform(0.5, 0.85) + rng.uniform(0.2, 0.6) * np.exp(
            -(distance / rng.uniform(0.3, 0.8)) ** 2)
    cast = rng.uniform(0.85, 1.15, 3)
    return light[..., None] * cast


# Clutter (never a tool) ---------------------------------------------------------------------

def _clutter_item(image, rng, short):
    height, width = image.shape[:2]
    x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
    colour = _metal(rng) if rng.random() < 0.5 else _any_colour(rng)
    size = max(2, int(short * rng.uniform(0.01, 0.04)))
    kind = int(rng.integers(0, 9))
    if kind == 0:  # screw / nut
        cv2.circle(image, (x, y), size, colour, -1, cv2.LINE_AA)
    elif kind == 1:  # offcut
        _stick(image, rng, x, y, size * 4, max(1, size // 2), colour)
    elif kind == 2:  # washer
        cv2.circle(image, (x, y), size, colour, max(1, size // 3), cv2.LINE_AA)
    elif kind == 3:  # pencil
        _stick(image, rng, x, y, short * rng.uniform(0.1, 0.3), max(2, size // 2), colour)
    elif kind == 4:  # cable
        points = np.cumsum(rng.normal(0, short * 0.06, (8, 2)), axis=0) + (x, y)
        cv2.polylines(image, [points.astype(np.int32)], False, colour, max(1, size // 3),
                      cv2.LINE_AA)
    elif kind == 5:  # rag or paper
        n = int(rng.integers(4, 8))
        radius = short * rng.uniform(0.08, 0.2)
        angles = np.sort(rng.uniform(0, 2 * math.pi, n))
        r = radius * rng.uniform(0.6, 1.0, n)
        points = np.stack([x + r * np.cos(angles), y + r * np.sin(angles)], 1)
        cv2.fillPoly(image, [points.astype(np.int32)], _any_colour(rng, (0, 0.6), (0.5, 1)),
                     cv2.LINE_AA)
    elif kind == 6:  # socket
        cv2.circle(image, (x, y), size * 2, colour, -1, cv2.LINE_AA)
        cv2.circle(image, (x, y), size, tuple(c // 3 for c in colour), -1, cv2.LINE_AA)
    elif kind == 7:  # box or block
        a = rng.uniform(0, 180)
        box = cv2.boxPoints(((x, y), (size * rng.uniform(2, 6), size * rng.uniform(2, 6)), a))
        cv2.fillPoly(image, [box.astype(np.int32)], colour, cv2.LINE_AA)
    else:  # roll of tape: a ring
        cv2.circle(image, (x, y), size * 3, colour, max(2, size), cv2.LINE_AA)


def _stick(image, rng, x, y, length, thickness, colour):
    angle = rng.uniform(0, math.pi)
    dx, dy = math.cos(angle) * length / 2, math.sin(angle) * length / 2
    cv2.line(image, (int(x - dx), int(y - dy)), (int(x + dx), int(y + dy)), colour,
             int(thickness), cv2.LINE_AA)


def add_clutter(image, rng, count):
    short = min(image.shape[:2])
    for _ in range(count):
        _clutter_item(image, rng, short)


# Tools on the bench -------------------------------------------------------------------------

def draw_tool_pixels(shape, label, center, length, angle, rng):
    """Return the tool's RGB canvas (float) and mask, shaded."""
    canvas = np.zeros(shape, np.uint8)
    mask = np.zeros(shape[:2], np.uint8)
    girth = rng.uniform(0.75, 1.35)
    _DRAW[label](_Pen(canvas, mask, center, length, angle, girth), rng)
    canvas = canvas.astype(np.float64)
    # shading across the tool (a round handle, a lit edge), sometimes a dark outline
    height, width = shape[:2]
    yy, xx = np.mgrid[0:height, 0:width]
    across = (-(xx - center[0]) * math.sin(angle) + (yy - center[1]) * math.cos(angle)) / max(
        1.0, length * 0.15)
    canvas *= (1.0 + rng.uniform(0.0, 0.35) * np.clip(across, -1, 1))[..., None]
    if rng.random() < 0.3:
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(canvas, contours, -1, (rng.uniform(0, 60),) * 3, 1, cv2.LINE_AA)
    return canvas, mask


def make_scene(rng: np.random.Generator, height: int = FRAME_SIZE[0], width: int = FRAME_SIZE[1],
               labels=TOOLS, count: int | None = None, tool_size=(0.3, 0.75),
               clutter=(0, 10)) -> Scene:
    """
    Draw a bench with `count` (default 1–3) non-overlapping tools of `labels`.

    tool_size: range of a tool's length as a fraction of the short side. Some
    clutter lies over the tools (occlusion); a tool's box is the tight box of its
    visible pixels.
    """
    short = min(height, width)
    image = bench_background(height, width, rng)
    add_clutter(image, rng, int(rng.integers(clutter[0], clutter[1] + 1)))
    count = int(rng.integers(1, 4)) if count is None else count
    light = lighting(height, width, rng)
    shadow_angle = rng.uniform(0, 2 * math.pi)
    shadow_strength = rng.uniform(0.15, 0.6)
    placed = []  # (label, mask, box)
    for label in (_pick(rng, labels) for _ in range(count)):
        for _attempt in range(20):
            length = short * rng.uniform(*tool_size) * RELATIVE_LENGTH[label]
            margin = length * 0.5 + 2  # the whole tool stays in the frame
            center = (rng.uniform(margin, width - margin), rng.uniform(margin, height - margin))
            canvas, mask = draw_tool_pixels(image.shape, label, center, length,
                                            rng.uniform(0, 2 * math.pi), rng)
            box = tight_box(mask)
            if box is None or any(_overlap(box, other) for _, _, other in placed):
                continue
            # a soft shadow cast away from the light, then the tool itself
            offset = max(1.0, length * rng.uniform(0.01, 0.05))
            shift = (int(round(offset * math.sin(shadow_angle))),
                     int(round(offset * math.cos(shadow_angle))))
            shadow = cv2.GaussianBlur(np.roll(mask, shift, (0, 1)).astype(np.float64), (0, 0),
                                      max(0.8, length * rng.uniform(0.01, 0.04)))
            image *= 1 - shadow[..., None] / 255.0 * shadow_strength
            image[mask > 0] = canvas[mask > 0]
            placed.append((label, mask, box))
            break
    masks = [(label, mask) for label, mask, _ in placed]
    if placed and rng.random() < 0.3:  # occluders: part of a tool under a rag, a cable, …
        before = image.copy()
        add_clutter(image, rng, int(rng.integers(1, 4)))
        changed = np.any(image != before, axis=2)
        masks = [(label, np.where(changed, 0, mask).astype(np.uint8)) for label, mask in masks]
    objects = [PlacedObject(label, box) for label, box in
               ((label, tight_box(mask)) for label, mask in masks) if box is not None]
    return Scene(finish(image * light, rng), objects)


def finish(image, rng) -> np.ndarray:
    """Camera: exposure, blur, noise and JPEG compression; float RGB -> uint8."""
    image = image * rng.uniform(0.8, 1.2) + rng.uniform(-15, 15)
    if rng.random() < 0.4:
        if rng.random() < 0.5:
            image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, 1.5))
        else:  # motion blur
            k = int(rng.integers(3, 7))
            kernel = np.zeros((k, k))
            kernel[k // 2, :] = 1.0 / k
            rotation = cv2.getRotationMatrix2D((k / 2 - 0.5, k / 2 - 0.5), rng.uniform(0, 180), 1)
            kernel = cv2.warpAffine(kernel, rotation, (k, k))
            image = cv2.filter2D(image, -1, kernel / max(1e-6, kernel.sum()))
    image = image + rng.normal(0, rng.uniform(0.5, 8), image.shape)
    image = np.clip(image, 0, 255).astype(np.uint8)
    if rng.random() < 0.4:
        quality = int(rng.integers(20, 90))
        _, encoded = cv2.imencode('.jpg', image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        image = np.ascontiguousarray(cv2.imdecode(encoded, cv2.IMREAD_COLOR)[:, :, ::-1])
    return image


def tight_box(mask):
    x, y, w, h = cv2.boundingRect(mask)  # of the nonzero pixels
    return None if w == 0 else (x, y, x + w, y + h)


def _overlap(a, b) -> int:
    return max(0, min(a[2], b[2]) - max(a[0], b[0])) * max(0, min(a[3], b[3]) - max(a[1], b[1]))
