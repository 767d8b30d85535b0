"""
The node as a process: how fast it stops while frames flow, how many large frames arrive.

    python bench/bench_process.py [--stops 5] [--frames 30] [--quick]

Timing figures belong here, not in tests (a busy machine slows a test, not a
benchmark's reader). A random-weight CLIP of the real architecture (tiny sizes)
is built on the spot.
- stop: the node answers 96×128 frames streamed at 30 Hz; SIGINT, then the
  seconds until the process has exited (launch escalates to SIGKILL after a few);
  the median and the worst of `--stops` runs;
- delivery: a camera process (test/peers/camera_peer.py) sends `--frames`
  best-effort rgb8 frames at 30 Hz with the package's Fast DDS profile (what a
  robot runs, no test-wide transports); the fraction the node received, for
  640×480 and 1280×720.
"""
import argparse
import os
from pathlib import Path
import signal
import statistics
import subprocess
import sys
import tempfile
import time

from clip_perception.ros.environment import collected, local_graph_environment
from clip_perception.ros.executable import node_command
from clip_perception.tools.model_building import build_random_model_directory
import numpy as np

PACKAGE = Path(__file__).resolve().parents[1] / 'clip_perception'


class Probe:
    """Frames out at a rate, the node's detections and /diagnostics in."""

    def __init__(self):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import SingleThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray
        self.rclpy = rclpy
        rclpy.init()
        self.node = rclpy.create_node('bench_process_probe')
        self.executor = SingleThreadedExecutor()
        self.executor.add_node(self.node)
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = self.node.create_publisher(Image, '/camera/image_raw', reliable)
        self.detections = collected(self.node, Detection2DArray, '/detections', reliable)
        self.diagnostics = collected(self.node, DiagnosticArray, '/diagnostics', reliable)
        self.frame = Image(height=96, width=128, encoding='rgb8', step=128 * 3)
        self.frame.data = np.full((96, 128, 3), 128, np.uint8).tobytes()
        self.streaming = False
        self.node.create_timer(1 / 30, self._send)

    def _send(self):
        if self.streaming:
            self.pub.publish(self.frame)

    def spin_until(self, condition, timeout):
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.02)
        return condition()

    def frames_received(self) -> int:
        if not self.diagnostics:
            return 0
        values = {kv.key: kv.value for kv in self.diagnostics[-1].status[0].values}
        return int(values['frames_received']) if values.get('state') == 'active' else -1

    def close(self):
        self.executor.shutdown()
        self.node.destroy_node()
        self.rclpy.try_shutdown()


def node_process(model: Path, env=None) -> subprocess.Popen:
    return subprocess.Popen(node_command() + [
        '--ros-args', '-p', f'model:={model}', '-p', 'device:=cpu',
        '-r', 'image:=/camera/image_raw'], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_seconds(probe: Probe, model: Path) -> float:
    """Start the node, stream at 30 Hz until it answers, SIGINT: seconds until it exited."""
    process = node_process(model)
    try:
        probe.detections.clear()
        probe.streaming = True
        if not probe.spin_until(lambda: len(probe.detections) >= 5, 120):
            raise SystemExit('the node never answered')
        process.send_signal(signal.SIGINT)
        stopped = time.monotonic()
        probe.spin_until(lambda: process.poll() is not None, 60)
        return time.monotonic() - stopped
    finally:
        probe.streaming = False
        if process.poll() is None:
            process.kill()
        process.wait()


def delivered(probe: Probe, model: Path, height: int, width: int, count: int) -> int:
    """Frames of a camera process that reached the node, with the packaged profile."""
    env = dict(os.environ, FASTDDS_DEFAULT_PROFILES_FILE=str(
        PACKAGE / 'config' / 'fastdds_large_images.xml'))
    env.pop('FASTDDS_BUILTIN_TRANSPORTS', None)
    process = node_process(model, env)
    try:
        probe.diagnostics.clear()
        if not probe.spin_until(lambda: probe.frames_received() >= 0, 120):
            raise SystemExit('the node never became active')
        camera = subprocess.run(
            [sys.executable, str(PACKAGE / 'test' / 'peers' / 'camera_peer.py'), '--height',
             str(height), '--width', str(width), '--count', str(count)], env=env,
            capture_output=True, text=True, timeout=120)
        if camera.returncode != 0:
            raise SystemExit(f'the camera failed: {camera.stdout}{camera.stderr}')
        probe.spin_until(lambda: probe.frames_received() >= count, 5)
        return probe.frames_received()
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--stops', type=int, default=5)
    parser.add_argument('--frames', type=int, default=30)
    parser.add_argument('--quick', action='store_true', help='one stop, 10 frames')
    args, _ = parser.parse_known_args(argv)  # `make bench` passes every script the same
    if args.quick:
        args.stops, args.frames = 1, 10
    os.environ.update(local_graph_environment())
    model = build_random_model_directory(Path(tempfile.mkdtemp()) / 'model')
    probe = Probe()
    try:
        stops = [stop_seconds(probe, model) for _ in range(args.stops)]
        print(f'stop while frames flow at 30 Hz: median {statistics.median(stops):.2f} s, '
              f'worst {max(stops):.2f} s over {len(stops)} stops')
        for height, width in ((480, 640), (720, 1280)):
            got = delivered(probe, model, height, width, args.frames)
            print(f'large frames {width}x{height} best effort, packaged profile: '
                  f'{got} of {args.frames} arrived ({got / args.frames:.0%})')
    finally:
        probe.close()
    return 0


if __name__ == '__main__':
    sys.exit(main())
