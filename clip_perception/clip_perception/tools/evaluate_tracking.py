"""
Evaluate tracking as the node runs it: ids across the frames of recorded sequences.

    python -m clip_perception.tools.evaluate_tracking --model MODEL_DIR \
        --params config/demo.yaml --sequences DIR [--json OUT]

DIR holds rosbag2 sequences and their truth.json (tools/sequences.py). Each
bag's images are read back in order and go through the detector and a fresh
tracker with the parameter file's settings, tracking on (the node's
stream_settings: the confident detections and, apart, the uncertain ones down to
track_low_score; the tracker's two passes).
Tracked boxes are matched to the truth of their label at IoU >= 0.5
(motmetrics). Where the bags carry depth and camera info, each tracked box
matched to a true one is also placed in 3D as the node places it, and the
median distance between that centre and the true one is reported (and the
same from the true boxes: what the depth estimate alone costs). The last line
printed is exactly `tracking: mota: M idf1: I id_switches: S`.
"""
import argparse
import json
from pathlib import Path

from clip_perception.engine.boxes import pairwise_iou
from clip_perception.engine.depth import box_to_3d, Pinhole
from clip_perception.engine.detector import ZeroShotDetector
from clip_perception.engine.model_loading import load_encoder
from clip_perception.engine.tracking import Tracker
from clip_perception.ros.image_conversion import depth_from_raw, frame_from_raw
from clip_perception.ros.messages import stamp_ns
from clip_perception.ros.package_files import resolve_model
from clip_perception.ros.parameters import (BY_NAME, read_parameters_file, STREAM_PARAMETERS,
                                            stream_settings)
from clip_perception.ros.rosbag_io import (bag_images, CAMERA_INFO_TOPIC, DEPTH_TOPIC,
                                           read_messages)
from clip_perception.tools.metrics import tracking_metrics
import numpy as np
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, Image
from tqdm import tqdm


def depth_frames(bag: Path) -> tuple[dict, Pinhole | None]:
    """Read the bag's depth images by stamp (metres) and its camera, if it has them."""
    depths, camera = {}, None
    for topic, _, _, data in read_messages(bag, [DEPTH_TOPIC, CAMERA_INFO_TOPIC]):
        msg = deserialize_message(data, Image if topic == DEPTH_TOPIC else CameraInfo)
        stamp = stamp_ns(msg.header)
        if topic == DEPTH_TOPIC:
            depths[stamp] = depth_from_raw(msg.height, msg.width, msg.encoding, msg.step,
                                           msg.is_bigendian, msg.data)
        else:
            camera = Pinhole.from_k(msg.k)
    return depths, camera


def centre_errors(truth: list, found, depth, camera: Pinhole) -> tuple[list, list]:
    """Measure 3D centre errors (mm): found boxes matched to true ones, and the true boxes."""
    tracked, true_boxes = [], []
    for obj in truth:
        expected = np.array(obj['center_m'])
        own = box_to_3d(depth, obj['box'], camera)
        if own is not None:
            true_boxes.append(1000 * float(np.linalg.norm(np.array(own.center) - expected)))
        same = [d for d in found if d.label == obj['label']]
        if not same:
            continue
        iou = pairwise_iou(np.array([obj['box']], np.float64), np.array([d.box for d in same]))
        if iou.max() >= 0.5:
            placed = box_to_3d(depth, same[int(iou.argmax())].box, camera)
            if placed is not None:
                tracked.append(1000 * float(np.linalg.norm(np.array(placed.center) - expected)))
    return tracked, true_boxes


def tracked_sequence(detector: ZeroShotDetector, tracker: Tracker, bag: Path, truth: list,
                     errors: tuple[list, list]):
    """Per frame (truth, tracked) as tracking_metrics takes them; 3D errors into `errors`."""
    depths, camera = depth_frames(bag)
    frames = []
    for (_, msg), expected in zip(bag_images(bag), truth, strict=True):
        stamp = stamp_ns(msg.header)
        assert stamp == expected['stamp_ns'], f'{bag}: frame {stamp} is not in the truth'
        frame = frame_from_raw(msg.height, msg.width, msg.encoding, msg.step, msg.data)
        result = detector.detect(frame.pixels, bgr=frame.bgr)
        found = tracker.update(result.detections, result.uncertain)
        frames.append(([(o['id'], o['label'], o['box']) for o in expected['objects']],
                       [(d.track_id, d.label, d.box) for d in found]))
        if camera is not None and stamp in depths:
            for into, values in zip(errors, centre_errors(expected['objects'], found,
                                                          depths[stamp], camera)):
                into.extend(values)
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
    detector = ZeroShotDetector(load_encoder(resolve_model(args.model), args.device, 'auto',
                                             settings.localizer),
                                settings)
    truth = json.loads((args.sequences / 'truth.json').read_text())
    errors = ([], [])
    sequences = [tracked_sequence(detector, Tracker(tracking), args.sequences / name, frames,
                                  errors)
                 for name, frames in tqdm(sorted(truth.items()), desc='sequences', leave=False)]
    figures = tracking_metrics(sequences)
    figures['centre_error_mm'] = float(np.median(errors[0])) if errors[0] else float('nan')
    figures['centre_error_mm_true_boxes'] = (float(np.median(errors[1])) if errors[1]
                                             else float('nan'))
    figures['boxes_in_3d'] = len(errors[0])
    print(f'3d: median centre error {figures["centre_error_mm"]:.1f} mm over '
          f'{len(errors[0])} tracked boxes matched to true ones; from the true boxes '
          f'{figures["centre_error_mm_true_boxes"]:.1f} mm over {len(errors[1])}')
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
