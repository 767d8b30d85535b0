"""
Synthetic workbench videos with ground-truth identities, for tracking.

One bench per sequence (the randomized generator's benches, light and tools);
each tool keeps its look (its own seed) while it slides and turns at a steady
speed, bounces off the frame's edges, and some leave the bench for a while
and come back elsewhere. Each frame goes through the generator's camera
(exposure, blur, noise, JPEG). The camera looks straight down at the bench, a
plane at a known distance; each tool has a height, and an aligned depth image
(1 mm noise, 1% holes) and the camera's intrinsics (CAMERA_K) come with every
frame. Truth per frame: (object id, label, tight xyxy box of the visible
pixels, 3D centre in metres: the visible pixels' centroid at half the tool's
height above the bench, in the camera's optical frame).

    python -m clip_perception.tools.sequences OUT --sequences 3 --frames 30 --seed 6001

writes OUT/sequence_K/ rosbag2 files (10 frames per second: sensor_msgs/Image on
/camera/image_raw, 16UC1 depth on /camera/depth/image_raw, CameraInfo on
/camera/camera_info), OUT/truth.json, and beside each bag its truth in the
demo's form (`python -m clip_perception.demo --bag OUT/sequence_0` replays it
with depth).
"""
import argparse
from dataclasses import dataclass
import json
import math
from pathlib import Path
import shutil

from clip_perception.ros.rosbag_io import BagFrame, write_image_bag
from clip_perception.tools.synthetic import (bench_background, draw_tool_pixels, finish,
                                             FRAME_SIZE, lighting, RELATIVE_LENGTH, tight_box,
                                             TOOLS)
import numpy as np

FRAME_PERIOD_NS = 100_000_000  # 10 frames per second
# A pinhole over the 320×240 frame (about 56° wide), row-major 3×3.
CAMERA_K = (300.0, 0.0, 160.0, 0.0, 300.0, 120.0, 0.0, 0.0, 1.0)
START_NS = 1_767_225_600 * 10**9


@dataclass
class MovingTool:
    """One tool's look (seed, length) and motion: pixels and radians per frame."""

    object_id: int
    label: str
    seed: int
    length: float
    center: np.ndarray
    velocity: np.ndarray
    angle: float
    spin: float
    away: tuple[int, int]  # frames [start, end) it is off the bench; (0, 0): never
    height_m: float = 0.03  # how far it stands above the bench

    def step(self, height: int, width: int) -> None:
        self.center = self.center + self.velocity
        margin = self.length * 0.35
        for axis, size in ((0, width), (1, height)):  # bounce off the frame's edges
            if not margin <= self.center[axis] <= size - margin:
                self.velocity[axis] = -self.velocity[axis]
                self.center[axis] = np.clip(self.center[axis], margin, size - margin)
        self.angle += self.spin


def make_sequence(rng: np.random.Generator, frames: int, height: int = FRAME_SIZE[0],
                  width: int = FRAME_SIZE[1], first_id: int = 1):
    """
    Return one sequence: per frame (RGB uint8, depth float32 metres, truth).

    truth: [(object id, label, xyxy box, (x, y, z) centre in metres)].
    """
    short = min(height, width)
    background = bench_background(height, width, rng) * lighting(height, width, rng)
    bench_m = rng.uniform(0.6, 1.0)
    fx, _, cx, _, fy, cy, *_ = CAMERA_K
    tools = []
    for index in range(int(rng.integers(2, 4))):
        label = TOOLS[int(rng.integers(len(TOOLS)))]
        length = short * rng.uniform(0.35, 0.6) * RELATIVE_LENGTH[label]
        speed, heading = rng.uniform(1.5, 6.0), rng.uniform(0, 2 * math.pi)
        away = (0, 0)
        if rng.random() < 0.5:  # leaves the bench for a while
            start = int(rng.integers(frames // 4, frames // 2))
            away = (start, start + int(rng.integers(3, 8)))
        tools.append(MovingTool(
            first_id + index, label, int(rng.integers(2**31)), length,
            np.array([rng.uniform(length * 0.5, width - length * 0.5),
                      rng.uniform(length * 0.5, height - length * 0.5)]),
            speed * np.array([math.cos(heading), math.sin(heading)]),
            rng.uniform(0, 2 * math.pi), rng.uniform(-0.08, 0.08), away,
            rng.uniform(0.015, 0.04)))
    sequence = []
    for frame_index in range(frames):
        image = background.copy()
        depth = np.full((height, width), bench_m, np.float64)
        truth = []
        for tool in tools:
            if tool.away[0] <= frame_index < tool.away[1]:
                if frame_index == tool.away[1] - 1:  # comes back somewhere else
                    tool.center = np.array([rng.uniform(tool.length * 0.5,
                                                        width - tool.length * 0.5),
                                            rng.uniform(tool.length * 0.5,
                                                        height - tool.length * 0.5)])
                continue
            canvas, mask = draw_tool_pixels(image.shape, tool.label, tuple(tool.center),
                                            tool.length, tool.angle,
                                            np.random.default_rng(tool.seed))
            image[mask > 0] = canvas[mask > 0]
            depth[mask > 0] = bench_m - tool.height_m
            truth.append((tool.object_id, tool.label, mask, tool.height_m))
        # tools drawn later lie on top: earlier tools' boxes shrink to what stays visible
        visible = []
        covered = np.zeros((height, width), bool)
        for object_id, label, mask, height_m in reversed(truth):
            shown = (mask > 0) & ~covered
            box = tight_box(shown.astype(np.uint8))
            covered |= mask > 0
            if box is not None:
                rows, cols = np.nonzero(shown)
                z = bench_m - height_m / 2
                center = ((cols.mean() + 0.5 - cx) * z / fx, (rows.mean() + 0.5 - cy) * z / fy, z)
                visible.append((object_id, label, tuple(int(v) for v in box),
                                tuple(round(float(v), 5) for v in center)))
        depth += rng.normal(0.0, 0.001, depth.shape)
        depth[rng.random(depth.shape) < 0.01] = 0.0  # holes: no measurement
        sequence.append((finish(image, rng), depth.astype(np.float32), visible[::-1]))
        for tool in tools:
            tool.step(height, width)
    return sequence


def write_sequences(out: Path, sequences: int, frames: int, seed: int) -> None:
    """Write the sequences as rosbag2 files and their truth (truth.json)."""
    rng = np.random.default_rng(seed)
    truth, next_id = {}, 1
    for number in range(sequences):
        sequence = make_sequence(rng, frames, first_id=next_id)
        name = f'sequence_{number}'
        shutil.rmtree(out / name, ignore_errors=True)  # a bag writer never overwrites
        stamps = [START_NS + i * FRAME_PERIOD_NS for i in range(frames)]
        write_image_bag(out / name, [
            BagFrame(image, stamp, 'workbench_camera_optical', depth, CAMERA_K)
            for (image, depth, _), stamp in zip(sequence, stamps)])
        truth[name] = [{'stamp_ns': stamp, 'objects': [
            {'id': object_id, 'label': label, 'box': list(box), 'center_m': list(center)}
            for object_id, label, box, center in objects]}
            for (_, _, objects), stamp in zip(sequence, stamps)]
        # beside the bag, in the demo's form: python -m clip_perception.demo --bag OUT/NAME
        (out / f'{name}_truth.json').write_text(json.dumps(truth[name], indent=1))
        next_id += 10
    (out / 'truth.json').write_text(json.dumps(truth, indent=1))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('out', type=Path)
    parser.add_argument('--sequences', type=int, default=3)
    parser.add_argument('--frames', type=int, default=30)
    parser.add_argument('--seed', type=int, default=6001)
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    write_sequences(args.out, args.sequences, args.frames, args.seed)
    print(f'{args.sequences} sequences of {args.frames} frames in {args.out}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
