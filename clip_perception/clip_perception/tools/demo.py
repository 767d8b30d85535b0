"""
The demo: the real node, the bundled model, a bundled rosbag2 replayed over DDS.

    python -m clip_perception.demo                 # what `make demo` runs
    python -m clip_perception.demo --make-bag demo/workbench_bag   # rebuild the bag

Starts `clip_perception_node` as its own process (parameters from
config/demo.yaml, the model from models/workbench_demo), replays each frame of
the bag (its recorded CDR) on /camera/image_raw, prints the detections of each
frame as they arrive, saves the node's ~/debug_image of each frame under
demo_output/, compares with the bag's ground truth and prints a one-line
summary. A bag that also carries aligned depth and camera info (as the tracking
videos of `python -m clip_perception.tools.sequences` do) is replayed with them:
the node then runs with depth and tracking, each detection's position in metres
is printed, and the summary adds the median distance to the true 3D centres.
Exits 0 when every frame was answered and the node stopped cleanly.
"""
import argparse
import collections
import json
import os
from pathlib import Path
import signal
import subprocess
import sys
import time

from clip_perception.ros.environment import local_graph_environment
from clip_perception.ros.executable import node_command
from clip_perception.ros.messages import box_corners, stamp_ns
from clip_perception.ros.rosbag_io import (BagFrame, CAMERA_INFO_TOPIC, DEPTH_TOPIC,
                                           read_messages, write_image_bag)
from clip_perception.tools.assets import DEMO_BAG, DEMO_MODEL, DEMO_PARAMS
from clip_perception.tools.datasets import write_rgb
from clip_perception.tools.metrics import frame_outcome
from clip_perception.tools.synthetic import make_scene
import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection2DArray, Detection3DArray

TOPIC = '/camera/image_raw'


def truth_path(bag: Path) -> Path:
    return bag.with_name(bag.name + '_truth.json')


def make_bag(bag: Path, frames: int, blank: int, seed: int) -> None:
    """Write a bag of synthetic 320×240 workbench frames and a JSON of their planted tools."""
    rng = np.random.default_rng(seed)
    scenes = [make_scene(rng, count=0 if i in range(frames - blank, frames) else None)
              for i in range(frames)]
    start = 1_767_225_600 * 10**9  # 2026-01-01T00:00:00Z
    stamps = [start + i * 500_000_000 for i in range(frames)]
    write_image_bag(bag, [BagFrame(s.image, stamp, 'workbench_camera')
                          for s, stamp in zip(scenes, stamps)], topic=TOPIC)
    truth = [{'stamp_ns': stamp, 'objects': [{'label': o.label, 'box': list(o.box)}
                                             for o in s.objects]}
             for s, stamp in zip(scenes, stamps)]
    truth_path(bag).write_text(json.dumps(truth, indent=1))
    print(f'wrote {bag} ({frames} frames, {blank} empty) and {truth_path(bag).name}')


def planted_outcome(detections, planted) -> collections.Counter:
    """
    Count what a Detection2D list did with the `planted` tools ({'label', 'box'}).

    Counts of found (right label, IoU >= 0.5), wrong_label, missed and false
    detections; see metrics.frame_outcome.
    """
    found = [(d.results[0].hypothesis.class_id, d.results[0].hypothesis.score, box_corners(d))
             for d in detections]
    return collections.Counter(frame_outcome(found, [(o['label'], o['box']) for o in planted]))


def _node_command(params: Path, model: Path, depth: bool) -> list[str]:
    command = node_command() + ['--ros-args', '--params-file', str(params), '-p',
                                f'model:={model}', '-p', 'image_reliability:=reliable',
                                '-r', f'image:={TOPIC}']
    if depth:
        command += ['-p', f"depth_topics:=['{DEPTH_TOPIC}']", '-p',
                    f"camera_info_topics:=['{CAMERA_INFO_TOPIC}']", '-p', 'tracking:=true']
    return command


def _centre_error_mm(detections_3d, planted) -> list[float]:
    """Measure (mm) each planted tool's true centre to the nearest 3D detection of its label."""
    errors = []
    for obj in planted:
        if 'center_m' not in obj:
            continue
        found = [d.bbox.center.position for d in detections_3d.detections
                 if d.results[0].hypothesis.class_id == obj['label']]
        if found:
            errors.append(1000 * min(float(np.linalg.norm(
                np.array([p.x, p.y, p.z]) - np.array(obj['center_m']))) for p in found))
    return errors


def run(bag: Path, model: Path, params: Path, out: Path, timeout: float) -> int:
    """
    Run the node as a process and replay the bag into it from this process.

    Both join one graph (the environment of local_graph_environment, which main
    sets).
    """
    out.mkdir(parents=True, exist_ok=True)
    truth = {t['stamp_ns']: t['objects'] for t in json.loads(truth_path(bag).read_text())}
    depth = any(True for _ in read_messages(bag, [DEPTH_TOPIC]))
    log = open(out / 'node.log', 'w')
    node_process = subprocess.Popen(_node_command(params, model, depth), stdout=log,
                                    stderr=subprocess.STDOUT)
    rclpy.init()
    player = rclpy.create_node('demo_player')
    reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub = player.create_publisher(Image, TOPIC, reliable)
    extra = {DEPTH_TOPIC: player.create_publisher(Image, DEPTH_TOPIC, reliable),
             CAMERA_INFO_TOPIC: player.create_publisher(CameraInfo, CAMERA_INFO_TOPIC, reliable)}
    detections, debug_images, positions = {}, {}, {}

    player.create_subscription(Detection2DArray, '/detections',
                               lambda m: detections.setdefault(stamp_ns(m.header), m), reliable)
    player.create_subscription(Image, '/clip_perception/debug_image',
                               lambda m: debug_images.setdefault(stamp_ns(m.header), m),
                               qos_profile_sensor_data)
    player.create_subscription(Detection3DArray, '/detections_3d',
                               lambda m: positions.setdefault(stamp_ns(m.header), m), reliable)

    def spin_until(condition, seconds):
        deadline = time.monotonic() + seconds
        while not condition() and time.monotonic() < deadline and node_process.poll() is None:
            rclpy.spin_once(player, timeout_sec=0.05)
        return condition()

    totals, blank_detections, frames, errors = collections.Counter(), 0, 0, []
    try:
        shown = model.relative_to(Path.cwd()) if model.is_relative_to(Path.cwd()) else model
        print(f'demo: starting clip_perception_node with model {shown}')
        if not spin_until(lambda: pub.get_subscription_count() > 0 and
                          player.count_publishers('/clip_perception/debug_image') > 0, timeout):
            raise RuntimeError('the node did not come up; see ' + str(out / 'node.log'))
        spin_until(lambda: False, 0.5)  # let the debug_image subscription match both ways
        if depth and not spin_until(lambda: all(p.get_subscription_count() > 0
                                                for p in extra.values()), timeout):
            raise RuntimeError('the node did not subscribe to depth; see ' + str(out / 'node.log'))
        for topic, _, _, data in read_messages(bag, [TOPIC, *extra]):
            if topic in extra:  # depth and camera info come before their colour frame
                extra[topic].publish(data)
                spin_until(lambda: False, 0.05)
                continue
            frame = deserialize_message(data, Image)
            stamp = stamp_ns(frame.header)
            pub.publish(data)  # the bag's CDR, as `ros2 bag play` sends it
            if not spin_until(lambda: stamp in detections and stamp in debug_images and
                              (not depth or stamp in positions), timeout):
                raise RuntimeError(f'no answer for frame {frames}; see {out / "node.log"}')
            frames += 1
            result = detections[stamp]
            planted = truth.get(stamp, [])
            listed = ', '.join(
                f'{d.results[0].hypothesis.class_id} {d.results[0].hypothesis.score:.2f} '
                f'[{", ".join(f"{v:.0f}" for v in box_corners(d))}]' for d in result.detections)
            print(f'frame {frames:2d} ({len(planted)} planted): {listed or "nothing"}')
            if depth:
                for d in positions[stamp].detections:
                    p = d.bbox.center.position
                    print(f'    {d.results[0].hypothesis.class_id} #{d.id} at '
                          f'({p.x:+.3f}, {p.y:+.3f}, {p.z:.3f}) m')
                errors += _centre_error_mm(positions[stamp], planted)
            image = debug_images[stamp]
            write_rgb(out / f'frame_{frames:02d}.png', np.frombuffer(
                image.data, np.uint8).reshape(image.height, image.width, 3))
            totals.update(planted_outcome(result.detections, planted))
            if not planted:
                blank_detections += len(result.detections)
    finally:
        player.destroy_node()
        rclpy.try_shutdown()
        if node_process.poll() is None:
            node_process.send_signal(signal.SIGINT)
        try:
            code = node_process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            node_process.kill()
            code = node_process.wait()
        log.close()
    blank_frames = sum(1 for objects in truth.values() if not objects)
    planted = totals['found'] + totals['missed'] + totals['wrong_label']
    print(f'demo summary: {frames} frames replayed; {planted} planted tools: '
          f'{totals["found"]} found (right label, IoU >= 0.5), {totals["missed"]} missed, '
          f'{totals["wrong_label"]} wrong label; {totals["false"]} false detections '
          f'({blank_detections} on {blank_frames} empty frames); annotated frames in {out}/; '
          f'node exit code {code}')
    if depth:
        median = f'{np.median(errors):.0f} mm' if errors else 'none'
        print(f"demo 3d: median distance from a planted tool's true centre to the nearest "
              f'detection of its label: {median} ({len(errors)} tools placed)')
    return 0 if code == 0 else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--bag', type=Path, default=DEMO_BAG)
    parser.add_argument('--model', type=Path, default=DEMO_MODEL)
    parser.add_argument('--params', type=Path, default=DEMO_PARAMS)
    parser.add_argument('--out', type=Path, default=Path('demo_output'))
    parser.add_argument('--timeout', type=float, default=120.0, help='seconds per step')
    parser.add_argument('--make-bag', type=Path, metavar='BAG',
                        help='write a new demo bag here instead of running the demo')
    # the bundled bag: 12 frames, 2 of them empty, seed 20261207 (the date it was drawn,
    # chosen before any model ran on it)
    parser.add_argument('--frames', type=int, default=12)
    parser.add_argument('--blank', type=int, default=2)
    parser.add_argument('--seed', type=int, default=20261207)
    args = parser.parse_args(argv)
    if args.make_bag:
        make_bag(args.make_bag, args.frames, args.blank, args.seed)
        return 0
    # The node (a child process) and this process's player join one local graph.
    os.environ.update(local_graph_environment())
    try:
        return run(args.bag, args.model.resolve(), args.params, args.out, args.timeout)
    except RuntimeError as error:
        print(f'demo failed: {error}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main())
