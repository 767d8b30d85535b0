r"""
Compare localizers side by side on the same scenes: quality, speed, work.

    python -m clip_perception.tools.compare_localizers \
        --run windows config/demo.yaml --run dense config/demo_dense.yaml \
        --scenes own build/eval/own --scenes heldout build/eval/heldout

Each `--run NAME PARAMS` is a parameter file the node could run with (its
`model` and `localizer` say what runs); each `--scenes STYLE DIR` a COCO-style
scene set (datasets.py). For every run and scene set, one line, exactly:

    localizer: NAME style: STYLE scene_accuracy: A ap50: P ap50_95: Q \
        fp_per_blank: F fps: R gflops: G

(one line, without the break) with the figures of `clip_perception.eval`
(tools/evaluate.py), `fps` the frames per second of the whole detector on
this machine (images already decoded, one frame at a time, as the node runs a
single camera) and `gflops` the floating-point operations of one frame (the
first scene), in 10^9, counted by torch's FlopCounterMode: the encoder passes,
Grad-CAM's backward included.
"""
import argparse
import json
from pathlib import Path
import time

from clip_perception.engine.detector import ZeroShotDetector
from clip_perception.engine.model_loading import load_encoder
from clip_perception.ros.package_files import resolve_model
from clip_perception.ros.parameters import read_parameters_file, settings_from_file
from clip_perception.tools.datasets import read_rgb, read_scenes
from clip_perception.tools.evaluate import evaluate_scenes
from torch.utils.flop_counter import FlopCounterMode


def frame_gflops(detector: ZeroShotDetector, frame) -> float:
    """Count the floating-point operations of detecting one frame, in 10^9."""
    with FlopCounterMode(display=False) as counter:
        detector.detect(frame)
    return counter.get_total_flops() / 1e9


def compare(detector: ZeroShotDetector, scenes) -> dict:
    """Evaluate on `scenes` (evaluate_scenes' figures) and add fps and gflops."""
    detector.detect(read_rgb(scenes[0].path))  # warm-up: first-call allocations
    started = time.perf_counter()
    figures = evaluate_scenes(detector, scenes)
    figures['fps'] = len(scenes) / (time.perf_counter() - started)
    figures['gflops'] = frame_gflops(detector, read_rgb(scenes[0].path))
    return figures


def line(name: str, style: str, figures: dict) -> str:
    """Return the module doc's line for one run on one scene set."""
    return (f'localizer: {name} style: {style} '
            f'scene_accuracy: {figures["scene_accuracy"]:.4f} ap50: {figures["ap50"]:.4f} '
            f'ap50_95: {figures["ap50_95"]:.4f} fp_per_blank: {figures["fp_per_blank"]:.4f} '
            f'fps: {figures["fps"]:.2f} gflops: {figures["gflops"]:.3f}')


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--run', nargs=2, action='append', required=True,
                        metavar=('NAME', 'PARAMS'), help='a name and a ROS parameter file')
    parser.add_argument('--scenes', nargs=2, action='append', required=True,
                        metavar=('STYLE', 'DIR'), help='a style name and a scene folder')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--json', type=Path, help='also write every figure here')
    args = parser.parse_args(argv)

    scene_sets = [(style, read_scenes(Path(folder))) for style, folder in args.scenes]
    report = []
    for name, params in args.run:
        model = read_parameters_file(params).get('model')
        if not model:
            parser.error(f'{params} names no model')
        settings = settings_from_file(params)
        detector = ZeroShotDetector(load_encoder(resolve_model(model), args.device, 'auto',
                                                 settings.localizer),
                                    settings)
        for style, scenes in scene_sets:
            figures = compare(detector, scenes)
            report.append({'localizer': name, 'params': params, 'model': model,
                           'style': style, **figures})
            print(line(name, style, figures), flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))


if __name__ == '__main__':
    main()
