"""
Evaluate a CLIP model as the node runs it: scene answers, boxes, empty benches.

    python -m clip_perception.eval --model MODEL_DIR --params config/demo.yaml \
        --scenes SCENES_DIR [--crops CROPS_DIR] [--json OUT]

--scenes (COCO-style annotations.json, see datasets.py): the full detector on
each frame, with the parameter file's settings, as the node would run it.
  scene_accuracy — top-1 of the frame's classification (what the node
      publishes on `classification`) over the scenes with exactly one object;
  ap50, ap50_95 — mean over labels of AP at IoU 0.5, and of AP averaged over
      IoU 0.50:0.05:0.95 (COCO);
  fp_per_blank — detections per frame on the frames without objects.
Above them: per-label AP, the classification confusions and the most
confident false detections.
--crops (captions.jsonl with labels): accuracy of the window classifier — each
crop against every label (prompt ensemble) and every background prompt, as
the detector decides a window; "" labels must go to a background prompt. Also
with each single template (prompt sensitivity), and the worst failures.

The last line printed is exactly
`scene_accuracy: A ap50: P ap50_95: Q fp_per_blank: F`.
"""
import argparse
from collections import Counter
from dataclasses import replace
import json
from pathlib import Path
import sys

from clip_perception.engine.detector import ZeroShotDetector
from clip_perception.engine.model_loading import load_encoder
from clip_perception.engine.preprocess import frame_to_device, resize_bicubic
from clip_perception.ros.package_files import resolve_model
from clip_perception.tools.cli import one_line_errors, read_settings
from clip_perception.tools.datasets import read_captions, read_rgb, read_scenes
from clip_perception.tools.metrics import detection_ap, detection_ap_50_95, mean_ap
import numpy as np
import torch
from tqdm import tqdm


def crop_accuracy(detector: ZeroShotDetector, items, templates, batch: int = 256):
    """
    Classify labelled crops with `templates` as the detector decides a window.

    Returns (accuracy, predictions [(item, predicted label, probability)]).
    """
    classifier = ZeroShotDetector(detector.encoder, replace(detector.settings,
                                                            prompt_templates=tuple(templates)))
    crop, device = detector.encoder.settings.crop, detector.encoder.device
    results = []
    for start in range(0, len(items), batch):
        chunk = items[start:start + batch]
        pixels = torch.stack([resize_bicubic(frame_to_device(read_rgb(i.path), device), crop, crop)
                              for i in chunk])
        names, probabilities = classifier.classify_crops(pixels)
        results.extend(zip(chunk, names, probabilities.tolist()))
    accuracy = float(np.mean([predicted == (item.label or '') for item, predicted, _ in results]))
    return accuracy, results


def evaluate_scenes(detector: ZeroShotDetector, scenes) -> dict:
    """
    Run the detector on each scene; return the figures of the module doc.

    Keys: scene_accuracy, single_object_scenes, ap50, ap50_95, ap50_per_label,
    ap50_95_per_label, fp_per_blank, blank_frames, confusions ({truth -> answer:
    count} over single-object scenes), blank_detections (label, score, file).
    """
    predictions, truths, answers = [], [], []
    for scene in tqdm(scenes, desc='scenes', unit='scene', leave=False):
        result = detector.detect(read_rgb(scene.path))
        predictions.append([(d.label, d.score, d.box) for d in result.detections])
        truths.append(list(scene.objects))
        answers.append(result.classification[0][0] if result.classification else '')
    ap50_per_label = detection_ap(predictions, truths)
    ap50_95_per_label = detection_ap_50_95(predictions, truths)
    single = [(t[0][0], a) for t, a in zip(truths, answers) if len(t) == 1]
    blank = [(p, s) for p, t, s in zip(predictions, truths, scenes) if not t]
    return {
        'scene_accuracy': (float(np.mean([truth == answer for truth, answer in single]))
                           if single else float('nan')),
        'single_object_scenes': len(single),
        'ap50': mean_ap(ap50_per_label),
        'ap50_95': mean_ap(ap50_95_per_label),
        'ap50_per_label': ap50_per_label,
        'ap50_95_per_label': ap50_95_per_label,
        'fp_per_blank': (sum(len(p) for p, _ in blank) / len(blank)) if blank else float('nan'),
        'blank_frames': len(blank),
        'confusions': {f'{truth} -> {answer}': count for (truth, answer), count in
                       sorted(Counter(s for s in single if s[0] != s[1]).items(),
                              key=lambda item: -item[1])},
        'blank_detections': sorted(((label, score, scene.path.name) for p, scene in blank
                                    for label, score, _ in p), key=lambda d: -d[1]),
    }


def _print_crops(detector, items, source, failures: int, report: dict) -> None:
    settings = detector.settings
    accuracy, results = crop_accuracy(detector, items, settings.prompt_templates)
    print(f'crops: {len(items)} from {source}')
    print(f'  ensemble of {len(settings.prompt_templates)} templates: {accuracy:.4f}')
    report['crop_accuracy_ensemble'] = accuracy
    report['crop_accuracy_per_template'] = {}
    for template in settings.prompt_templates:
        single, _ = crop_accuracy(detector, items, (template,))
        report['crop_accuracy_per_template'][template] = single
        print(f'  single template {template!r}: {single:.4f}')
    worst = sorted((r for r in results if r[1] != (r[0].label or '')), key=lambda r: -r[2])
    print(f'  worst failures ({min(failures, len(worst))} most confident mistakes):')
    for item, predicted, probability in worst[:failures]:
        print(f'    {item.path.name}: {item.label or "background"!s} -> '
              f'{predicted or "background"} ({probability:.3f})')


def _print_scenes(figures: dict, source, count: int, failures: int) -> None:
    print(f'scenes: {count} from {source} ({figures["blank_frames"]} without objects, '
          f'{figures["single_object_scenes"]} with one object)')
    for label, value in figures['ap50_per_label'].items():
        print(f'  {label}: AP@0.5 {value:.4f}  AP@0.5:0.95 '
              f'{figures["ap50_95_per_label"][label]:.4f}')
    print('  classification mistakes on one-object scenes (truth -> answer: count): '
          + (', '.join(f'{k}: {v}' for k, v in figures['confusions'].items()) or 'none'))
    detections = figures['blank_detections']
    print(f'  detections on empty frames: {len(detections)}'
          + ''.join(f'\n    {name}: {label} ({score:.3f})'
                    for label, score, name in detections[:failures]))


@one_line_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--model', required=True)
    parser.add_argument('--params', type=Path, required=True,
                        help='ROS parameter file the node would run with')
    parser.add_argument('--scenes', type=Path, required=True)
    parser.add_argument('--crops', type=Path)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--failures', type=int, default=10)
    parser.add_argument('--json', type=Path, help='also write the figures here')
    args = parser.parse_args(argv)

    settings, _ = read_settings(args.params)
    detector = ZeroShotDetector(load_encoder(resolve_model(args.model), args.device, 'auto',
                                             settings.localizer),
                                settings)
    report = {'model': args.model, 'params': str(args.params), 'scenes': str(args.scenes)}
    if args.crops:
        items = [i for i in read_captions(args.crops) if i.label is not None]
        _print_crops(detector, items, args.crops, args.failures, report)
    scenes = read_scenes(args.scenes)
    figures = evaluate_scenes(detector, scenes)
    _print_scenes(figures, args.scenes, len(scenes), args.failures)
    report.update(figures)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1))
    print(f'scene_accuracy: {figures["scene_accuracy"]:.4f} ap50: {figures["ap50"]:.4f} '
          f'ap50_95: {figures["ap50_95"]:.4f} fp_per_blank: {figures["fp_per_blank"]:.4f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
