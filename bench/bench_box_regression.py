"""
Benchmark the box regressor's cost per frame.

What the box regressor costs per frame: the demo model on synthetic 320×240 frames
with `box_regression` off (the baseline) and on, alternating, in one process.

    .venv/bin/python bench/bench_box_regression.py [--frames 6] [--repeats 3]

Prints seconds per frame for both and their ratio (on / off).
"""
import argparse
import time

from clip_perception.engine.detector import ZeroShotDetector
from clip_perception.engine.model_loading import load_clip
from clip_perception.ros.package_files import resolve_model
from clip_perception.ros.parameters import settings_from_file
from clip_perception.tools.assets import DEMO_MODEL, DEMO_PARAMS
from clip_perception.tools.synthetic import make_scene
import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--model', default=str(DEMO_MODEL))
    parser.add_argument('--params', default=str(DEMO_PARAMS))
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--frames', type=int, default=6)
    parser.add_argument('--repeats', type=int, default=3)
    args = parser.parse_args()
    detector = ZeroShotDetector(load_clip(resolve_model(args.model), args.device),
                                settings_from_file(args.params))
    if detector.encoder.box_regressor is None:
        parser.error(f'{args.model} has no box regressor')
    frames = [make_scene(np.random.default_rng(seed)).image for seed in range(args.frames)]
    detector.detect(frames[0])  # warm-up
    seconds = {False: [], True: []}
    for _ in range(args.repeats):
        for regression in (False, True):
            detector.update(box_regression=regression)
            start = time.perf_counter()
            for frame in frames:
                detector.detect(frame)
            seconds[regression].append((time.perf_counter() - start) / len(frames))
    off, on = np.median(seconds[False]), np.median(seconds[True])
    windows = detector.detect(frames[0]).num_windows
    print(f'{windows} windows per frame, {args.frames} frames, median of {args.repeats}')
    print(f'box regression off: {off:.3f} s/frame; on: {on:.3f} s/frame; ratio on/off: '
          f'{on / off:.3f}')


if __name__ == '__main__':
    main()
