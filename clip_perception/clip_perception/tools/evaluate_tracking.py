"""
Evaluate tracking as the node runs it: ids across the frames of recorded sequences.

    python -m clip_perception.tools.evaluate_tracking --model MODEL_DIR \
        --params config/demo.yaml --sequences DIR [--json OUT]

DIR holds rosbag2 sequences and their truth.json (tools/sequences.py). Each
bag's images are read back in order and go through the detector and a fresh
tracker with the parameter file's settings, tracking on (the node's
stream_settings: detections down to track_low_score, the tracker's two passes).
Tracked boxes are matched to the truth of their label at IoU >= 0.5
(motmetrics). The last line printed is exactly
`tracking: mota: M idf1: I id_switches: S`.
"""
import argparse
import json
from pathlib import Path

from clip_perception.engine.detector import ZeroShotDetector
from clip_perception.engine.model_loading import load_encoder
from clip_perception.engine.tracking import Tracker
from clip_perception.ros.image_conversion import frame_from_raw
from clip_perception.ros.parameters import (BY_NAME, read_parameters_file, STREAM_PARAMETERS,
                                            stream_settings)
from clip_perception.tools.metrics import tracking_metrics
from clip_perception.tools.search import bag_images
from tqdm import tqdm


def tracked_sequence(detector: ZeroShotDetector, tracker: Tracker, bag: Path, truth: list):
    """Per frame (truth, tracked) as tracking_metrics takes them."""
    frames = []
    for (_, msg), expected in zip(bag_images(bag), truth, strict=True):
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        assert stamp == expected['stamp_ns'], f'{bag}: frame {stamp} is not in the truth'
        frame = frame_from_raw(msg.height, msg.width, msg.encoding, msg.step, msg.data)
        found = tracker.update(detector.detect(frame.pixels, bgr=frame.bgr).detections)
        frames.append(([(o['id'], o['label'], o['box']) for o in expected['objects']],
                       [(d.track_id, d.label, d.box) for d in found]))
    return frames


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--model', required=True)
    parser.add_argument('--params', type=Path, required=True)
    parser.add_argument('--sequences', type=Path, required=True)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--json', type=Path)
    args = parser.parse_args(argv)
    values = {name: BY_NAME[name].default for name in STREAM_PARAMETERS}
    values.update({k: v for k, v in read_parameters_file(args.params).items()
                   if k in STREAM_PARAMETERS})
    values['tracking'] = True
    settings, tracking = stream_settings(values)
    detector = ZeroShotDetector(load_encoder(args.model, args.device, 'auto', settings.localizer),
                                settings)
    truth = json.loads((args.sequences / 'truth.json').read_text())
    sequences = [tracked_sequence(detector, Tracker(tracking), args.sequences / name, frames)
                 for name, frames in tqdm(sorted(truth.items()), desc='sequences', leave=False)]
    figures = tracking_metrics(sequences)
    print(f'tracking: {len(sequences)} sequences, {sum(len(s) for s in sequences)} frames, '
          f'{figures["objects"]} object boxes; {figures["misses"]} missed, '
          f'{figures["false_positives"]} false')
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({'model': args.model, 'params': str(args.params),
                                         **figures}, indent=1))
    print(f'tracking: mota: {figures["mota"]:.4f} idf1: {figures["idf1"]:.4f} '
          f'id_switches: {figures["id_switches"]}')
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
