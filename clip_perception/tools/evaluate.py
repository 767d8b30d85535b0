"""
Evaluate a CLIP model as the detector runs it: crop classification and detection.

    python -m clip_perception.eval --model MODEL_DIR --params config/demo.yaml \
        --crops CROPS_DIR --scenes SCENES_DIR

--crops (captions.jsonl with labels): accuracy of the window classifier — each
crop against every label (prompt ensemble) and every background prompt, as
the detector decides a window; "" labels must go to a background prompt. Also
with each single template (prompt sensitivity), and the worst failures.
--scenes (COCO-style annotations.json): the full detector on each frame;
AP@0.5 per label and its mean; false positives on frames without objects.

The last line printed is `image_accuracy: A ap50: P blank_fp: N`.
"""
import argparse
from dataclasses import replace
import json
from pathlib import Path

from clip_perception.engine.detector import ZeroShotDetector
from clip_perception.engine.model_loading import load_clip
from clip_perception.engine.preprocess import frame_to_device, resize_bicubic
from clip_perception.ros.parameters import settings_from_file
from clip_perception.tools.datasets import read_captions, read_rgb, read_scenes
from clip_perception.tools.metrics import detection_ap, mean_ap
import numpy as np
import torch


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


def evaluate_scenes(detector: ZeroShotDetector, scenes):
    predictions, truths = [], []
    for scene in scenes:
        result = detector.detect(read_rgb(scene.path))
        predictions.append([(d.label, d.score, d.box) for d in result.detections])
        truths.append(list(scene.objects))
    per_label = detection_ap(predictions, truths)
    blank = [p for p, t in zip(predictions, truths) if not t]
    return per_label, mean_ap(per_label), sum(len(p) for p in blank), len(blank)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--model', required=True)
    parser.add_argument('--params', type=Path, required=True,
                        help='ROS parameter file the node would run with')
    parser.add_argument('--crops', type=Path)
    parser.add_argument('--scenes', type=Path)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--failures', type=int, default=10)
    parser.add_argument('--json', type=Path, help='also write the figures here')
    args = parser.parse_args(argv)

    detector = ZeroShotDetector(load_clip(args.model, args.device),
                                settings_from_file(args.params))
    settings = detector.settings
    report = {'model': args.model, 'params': str(args.params)}
    accuracy = float('nan')
    if args.crops:
        items = [i for i in read_captions(args.crops) if i.label is not None]
        accuracy, results = crop_accuracy(detector, items, settings.prompt_templates)
        print(f'crops: {len(items)} from {args.crops}')
        print(f'  ensemble of {len(settings.prompt_templates)} templates: {accuracy:.4f}')
        report['crop_accuracy_ensemble'] = accuracy
        report['crop_accuracy_per_template'] = {}
        for template in settings.prompt_templates:
            single, _ = crop_accuracy(detector, items, (template,))
            report['crop_accuracy_per_template'][template] = single
            print(f'  single template {template!r}: {single:.4f}')
        failures = sorted((r for r in results if r[1] != (r[0].label or '')),
                          key=lambda r: -r[2])[:args.failures]
        print(f'  worst failures ({len(failures)} most confident mistakes):')
        for item, predicted, probability in failures:
            print(f'    {item.path.name}: {item.label or "background"!s} -> '
                  f'{predicted or "background"} ({probability:.3f})')
    ap50, blank_fp = float('nan'), -1
    if args.scenes:
        scenes = read_scenes(args.scenes)
        per_label, ap50, blank_fp, blank_frames = evaluate_scenes(detector, scenes)
        print(f'scenes: {len(scenes)} from {args.scenes} ({blank_frames} without objects)')
        for label, value in per_label.items():
            print(f'  AP@0.5 {label}: {value:.4f}')
        print(f'  mean AP@0.5: {ap50:.4f}; detections on empty frames: {blank_fp}')
        report.update(ap50=ap50, ap50_per_label=per_label, blank_fp=blank_fp,
                      blank_frames=blank_frames)
    if args.json:
        args.json.write_text(json.dumps(report, indent=1))
    print(f'image_accuracy: {accuracy:.4f} ap50: {ap50:.4f} blank_fp: {blank_fp}')


if __name__ == '__main__':
    main()
