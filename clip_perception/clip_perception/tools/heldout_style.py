"""
A second, independent drawing style of the five tools: for evaluation only.

    python -m clip_perception.tools.heldout_style OUT --count 300 --blank 100 --seed 5001

Nothing in training imports this module (test/test_layout.py checks it): a
model trained on `synthetic.py` and evaluated on these scenes shows how far it
generalizes beyond the drawing it learnt from. The construction differs on
purpose: tools are assembled from capsules, ellipses and arcs in Pillow on a
3× supersampled RGBA layer, with real holes (a wrench's jaw and ring, a tape's
window show the bench through them); palettes are painted and two-tone tools
(hi-vis yellow and black, enamelled red, chrome with dipped handles); benches
are plywood with knots, chequer plate, ceramic tiles, speckled linoleum,
cardboard and felt; light is a warm or cool tint with a vignette and a hard,
offset shadow; the camera adds defocus and grain. Writes the COCO-style scenes
of `datasets.py`, frames of 320×240.
"""
import argparse
import math
from pathlib import Path

from clip_perception.tools.datasets import AnnotatedScene, write_rgb, write_scenes
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

LABELS = ('hammer', 'screwdriver', 'wrench', 'tape measure', 'pliers')
SIZE = (320, 240)  # width, height
SUPER = 3  # supersampling of the tool layer

_PAINTS = [(214, 40, 40), (250, 204, 0), (20, 20, 24), (0, 102, 204), (255, 120, 0),
           (30, 140, 70), (120, 60, 170), (230, 230, 230), (200, 0, 90)]
_CHROME = [(205, 208, 214), (160, 164, 172), (120, 124, 130), (225, 225, 230)]


def _colour(rng, palette, jitter=18):
    base = palette[int(rng.integers(len(palette)))]
    return tuple(int(np.clip(c + rng.integers(-jitter, jitter + 1), 0, 255)) for c in base)


class _Shape:
    """Polygons in the tool's frame (x along, y across, units of its length) -> layer."""

    def __init__(self, layer: Image.Image, center, length, angle):
        self.draw = ImageDraw.Draw(layer)
        self.center = np.asarray(center, float) * SUPER
        self.scale = length * SUPER
        self.cos, self.sin = math.cos(angle), math.sin(angle)

    def _xy(self, points):
        p = np.asarray(points, float) * self.scale
        x = p[:, 0] * self.cos - p[:, 1] * self.sin + self.center[0]
        y = p[:, 0] * self.sin + p[:, 1] * self.cos + self.center[1]
        return [(float(a), float(b)) for a, b in zip(x, y)]

    def fill(self, points, colour):
        """Fill a polygon; colour None cuts a hole (transparent)."""
        self.draw.polygon(self._xy(points), fill=(0, 0, 0, 0) if colour is None
                          else (*colour, 255))

    def ellipse(self, cx, cy, rx, ry, colour, start=0.0, stop=2 * math.pi):
        t = np.linspace(start, stop, 40)
        points = np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], 1)
        if stop - start < 2 * math.pi:
            points = np.vstack([[cx, cy], points])
        self.fill(points, colour)

    def capsule(self, x0, x1, r0, r1, colour, y=0.0):
        """Fill a tapered bar with round ends, from x0 (radius r0) to x1 (radius r1)."""
        t = np.linspace(-math.pi / 2, math.pi / 2, 12)
        right = np.stack([x1 + r1 * np.cos(t), y + r1 * np.sin(t)], 1)
        left = np.stack([x0 - r0 * np.cos(t), y - r0 * np.sin(t)], 1)
        self.fill(np.vstack([right, left]), colour)

    def band(self, x0, x1, r, colour, y=0.0):
        self.fill([(x0, y - r), (x1, y - r), (x1, y + r), (x0, y + r)], colour)


def _hammer(s, rng):
    handle = _colour(rng, _PAINTS + [(170, 120, 70)])
    s.capsule(-0.5, 0.3, 0.05, 0.035, handle)
    if rng.random() < 0.7:
        s.capsule(-0.5, -0.12, 0.065, 0.06, _colour(rng, _PAINTS))  # two-tone grip
    head = _colour(rng, _CHROME + _PAINTS[:3], 10)
    width = rng.uniform(0.09, 0.13)
    if rng.random() < 0.5:  # framing hammer: face, then a curved claw
        s.fill([(0.3, -0.26), (0.3 + width, -0.26), (0.3 + width, 0.02), (0.3, 0.02)], head)
        s.ellipse(0.3 + width / 2, -0.27, width * 0.6, 0.05, head)
        t = np.linspace(0, math.pi / 2, 10)
        outer = np.stack([0.3 + 0.22 * np.sin(t) * 0.5, 0.02 + 0.22 * (1 - np.cos(t))], 1)
        inner = outer[::-1] + [width * 0.8, -0.02]
        s.fill(np.vstack([[(0.3, 0.0)], outer, inner, [(0.3 + width, 0.0)]]), head)
    else:  # club or sledge: a barrel both sides
        s.fill([(0.28, -0.2), (0.28 + width * 1.4, -0.2), (0.28 + width * 1.4, 0.2),
                (0.28, 0.2)], head)
        for end in (-0.2, 0.2):
            s.ellipse(0.28 + width * 0.7, end, width * 0.7, 0.025, _colour(rng, _CHROME, 5))


def _screwdriver(s, rng):
    core = _colour(rng, _PAINTS)
    s.capsule(-0.5, -0.08, 0.075, 0.06, core)
    s.ellipse(-0.3, 0.0, 0.14, 0.085, core)  # bulbous grip
    if rng.random() < 0.7:
        s.band(-0.42, -0.2, 0.03, _colour(rng, _PAINTS))  # a stripe along the grip
    s.band(-0.09, -0.03, 0.04, _colour(rng, _CHROME, 5))  # ferrule
    shaft = rng.uniform(0.012, 0.022)
    s.band(-0.03, 0.46, shaft, _colour(rng, _CHROME, 5))
    s.fill([(0.46, -shaft), (0.5, -shaft * (2.0 if rng.random() < 0.5 else 0.4)),
            (0.5, shaft * 0.4), (0.46, shaft)], _colour(rng, [(60, 60, 66)], 5))


def _wrench(s, rng):
    body = _colour(rng, _CHROME + [(214, 40, 40), (0, 102, 204)], 10)
    s.capsule(-0.34, 0.34, 0.045, 0.04, body)
    s.ellipse(0.38, 0.0, 0.13, 0.13, body)
    s.fill([(0.36, -0.05), (0.6, -0.09), (0.6, 0.09), (0.36, 0.05)], None)  # open jaw
    s.ellipse(-0.38, 0.0, 0.12, 0.12, body)
    if rng.random() < 0.5:  # ring end: a 12-point hole
        t = np.linspace(0, 2 * math.pi, 13)[:-1]
        r = np.where(np.arange(12) % 2 == 0, 0.07, 0.06)
        s.fill(np.stack([-0.38 + r * np.cos(t), r * np.sin(t)], 1), None)
    else:
        s.fill([(-0.36, -0.045), (-0.6, -0.08), (-0.6, 0.08), (-0.36, 0.045)], None)


def _tape_measure(s, rng):
    case = _colour(rng, [(250, 204, 0), (20, 20, 24), (214, 40, 40), (255, 120, 0)])
    s.ellipse(0.0, 0.0, 0.42, 0.42, case)
    s.fill([(-0.05, -0.42), (0.42, -0.42), (0.42, 0.42), (-0.05, 0.42)], case)
    bumper = _colour(rng, [(20, 20, 24), (90, 90, 90), (250, 204, 0)])
    for corner in ((0.38, -0.38), (0.38, 0.38)):
        s.ellipse(*corner, 0.08, 0.08, bumper)
    s.ellipse(-0.02, 0.0, 0.18, 0.18, _colour(rng, _CHROME, 5))
    s.ellipse(-0.02, 0.0, 0.05, 0.05, None)  # a hole in the badge
    s.band(0.42, 0.5, 0.035, (235, 215, 40), y=0.36)  # blade and hook
    s.band(0.48, 0.52, 0.06, _colour(rng, _CHROME, 5), y=0.36)


def _pliers(s, rng):
    grips = _colour(rng, _PAINTS)
    open_angle = rng.uniform(0.08, 0.35)
    for side in (-1, 1):
        t = np.linspace(0, 1, 10)
        centre = np.stack([-0.5 + 0.55 * t, side * open_angle * (1 - t) ** 1.5 + side * 0.02], 1)
        upper, lower = centre + [0, 0.035], centre - [0, 0.035]
        s.fill(np.vstack([upper, lower[::-1]]), grips)
    s.ellipse(0.08, 0.0, 0.06, 0.06, _colour(rng, _CHROME, 5))
    if rng.random() < 0.5:  # long nose
        s.fill([(0.08, -0.04), (0.5, -0.006), (0.5, 0.006), (0.08, 0.04)], _colour(rng, _CHROME))
    else:  # combination jaws with a cutter hole
        s.fill([(0.08, -0.06), (0.42, -0.035), (0.5, 0.0), (0.42, 0.035), (0.08, 0.06)],
               _colour(rng, _CHROME))
        s.ellipse(0.2, 0.0, 0.025, 0.018, None)


_TOOLS = {'hammer': (_hammer, 1.0), 'screwdriver': (_screwdriver, 0.9), 'wrench': (_wrench, 0.9),
          'tape measure': (_tape_measure, 0.45), 'pliers': (_pliers, 0.85)}


def _bench(rng, width, height) -> np.ndarray:
    kind = int(rng.integers(6))
    yy, xx = np.mgrid[0:height, 0:width].astype(float)
    if kind == 0:  # plywood: wide soft bands and a few knots
        base = np.array(_colour(rng, [(214, 180, 130), (190, 150, 100)], 15), float)
        bands = np.sin(yy / rng.uniform(12, 30) + 0.6 * np.sin(xx / rng.uniform(40, 90)))
        image = base + bands[..., None] * 12
        for _ in range(int(rng.integers(1, 4))):
            cx, cy = rng.uniform(0, width), rng.uniform(0, height)
            d = np.hypot((xx - cx) / 2.5, yy - cy)
            image -= (np.exp(-d / 6.0) * 60)[..., None]
    elif kind == 1:  # chequer plate: raised diagonal bars
        base = np.array(_colour(rng, _CHROME, 10), float)
        period = rng.uniform(14, 22)
        u, v = (xx + yy) % period, (xx - yy) % period
        bars = ((np.abs(u - period / 2) < 2) & (((xx // period + yy // period) % 2) == 0)) | (
            (np.abs(v - period / 2) < 2) & (((xx // period + yy // period) % 2) == 1))
        image = base + bars[..., None] * 30 - 8
    elif kind == 2:  # ceramic tiles with grout
        base = np.array(_colour(rng, [(235, 235, 225), (170, 200, 210), (200, 120, 90)]), float)
        tile = int(rng.integers(30, 70))
        grout = ((xx % tile) < 2) | ((yy % tile) < 2)
        image = np.where(grout[..., None], base * 0.6, base)
    elif kind == 3:  # speckled linoleum
        base = np.array(_colour(rng, [(120, 120, 110), (90, 110, 90), (150, 130, 110)]), float)
        speckle = (rng.random((height, width)) < 0.08) * rng.uniform(-60, 60, (height, width))
        image = base + speckle[..., None]
    elif kind == 4:  # cardboard with flutes and a stain
        base = np.array(_colour(rng, [(190, 150, 100)], 12), float)
        image = base + np.sin(xx / 3.0)[..., None] * 4
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        image -= (np.exp(-np.hypot(xx - cx, yy - cy) / rng.uniform(20, 60)) * 40)[..., None]
    else:  # felt
        base = np.array(_colour(rng, [(40, 60, 40), (60, 30, 30), (40, 40, 70)], 10), float)
        image = base + rng.normal(0, 10, (height, width, 1))
        image = np.asarray(Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).filter(
            ImageFilter.GaussianBlur(0.8)), float)
    return np.clip(image, 0, 255)


def render_scene(rng, count: int):
    """One frame with `count` tools: (H×W×3 uint8, [(label, xyxy)])."""
    width, height = SIZE
    image = Image.fromarray(_bench(rng, width, height).astype(np.uint8)).convert('RGBA')
    objects, taken = [], []
    light = rng.uniform(0, 2 * math.pi)
    for _ in range(count):
        label = LABELS[int(rng.integers(len(LABELS)))]
        draw, relative = _TOOLS[label]
        for _attempt in range(30):
            length = min(width, height) * rng.uniform(0.3, 0.8) * relative
            center = (rng.uniform(length / 2 + 3, width - length / 2 - 3),
                      rng.uniform(length / 2 + 3, height - length / 2 - 3))
            layer = Image.new('RGBA', (width * SUPER, height * SUPER), (0, 0, 0, 0))
            draw(_Shape(layer, center, length, rng.uniform(0, 2 * math.pi)), rng)
            layer = layer.resize((width, height), Image.LANCZOS)
            alpha = np.asarray(layer)[..., 3]
            ys, xs = np.nonzero(alpha > 64)
            if len(xs) == 0:
                continue
            box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
            if any(min(box[2], b[2]) > max(box[0], b[0]) and min(box[3], b[3]) > max(box[1], b[1])
                   for b in taken):
                continue
            offset = max(2, int(length * 0.05))
            shadow = Image.new('RGBA', (width, height), (0, 0, 0, 0))
            shadow.putalpha(Image.fromarray((alpha * 0.45).astype(np.uint8)))
            image.alpha_composite(shadow, (int(offset * math.cos(light)),
                                           int(offset * math.sin(light))))
            image.alpha_composite(layer)
            objects.append((label, box))
            taken.append(box)
            break
    pixels = np.asarray(image.convert('RGB'), float)
    yy, xx = np.mgrid[0:height, 0:width]
    radius = np.hypot(xx - width / 2, yy - height / 2) / math.hypot(width / 2, height / 2)
    vignette = 1 - rng.uniform(0.1, 0.45) * radius ** 2
    tint = np.array([1.08, 1.0, 0.86]) if rng.random() < 0.5 else np.array([0.9, 1.0, 1.1])
    pixels = pixels * vignette[..., None] * tint * rng.uniform(0.75, 1.15)
    frame = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    if rng.random() < 0.5:
        frame = frame.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.3)))
    pixels = np.asarray(frame, float) + rng.normal(0, rng.uniform(1, 6), (height, width, 1))
    return np.clip(pixels, 0, 255).astype(np.uint8), objects


def make_scenes(out: Path, count: int, blank: int, seed: int) -> list[AnnotatedScene]:
    """`count` scenes with 1–3 tools and `blank` empty benches (COCO-style, datasets.py)."""
    rng = np.random.default_rng(seed)
    width, height = SIZE
    scenes = []
    for index in range(count + blank):
        pixels, objects = render_scene(rng, 0 if index >= count else int(rng.integers(1, 4)))
        path = out / 'scenes' / f'{index:06d}.png'
        write_rgb(path, pixels)
        scenes.append(AnnotatedScene(path, width, height, tuple(objects)))
    write_scenes(out, scenes, LABELS)
    return scenes


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('out', type=Path)
    parser.add_argument('--count', type=int, required=True)
    parser.add_argument('--blank', type=int, default=0)
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    make_scenes(args.out, args.count, args.blank, args.seed)
    print(f'wrote {args.count} scenes and {args.blank} empty benches to {args.out}')


if __name__ == '__main__':
    main()
