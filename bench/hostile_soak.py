"""
A mixed hostile stream against the node as a process: it must keep answering, within bounds.

    python bench/hostile_soak.py [--seconds 600]

Starts the node (the demo model, config/demo.yaml, depth and camera info on, the
memory storing every frame) as its own process on a private ROS domain, and for
`--seconds` sends what an attacker would, all at once:

- good frames at 5 Hz (the demo bag's), each with aligned depth and camera info,
  and more depth and camera info at 100 Hz;
- bad frames at 2 Hz, every kind in turn: unknown encoding, truncated data,
  empty, 1×100000, 8×4000, an absurd step, a long encoding name;
- label storms every 3 s: 20 parameter changes (some invalid), one of 300 labels;
- tracking switched on or off every 5 s;
- bursts every 15 s: 50 ~/detect callers at once (some asking for 150 labels),
  and 5 ~/find callers.

Then it checks that the node still answers a frame, that every request was
answered (by a result or a refusal), that /diagnostics is not ERROR, and that the
node's resident memory at the end is within 20% of the most it had during the
first `--warmup` seconds of the stream (by then every kind of abuse has come at
least once: the allocator's pools, torch's per-shape workspaces and the bounded
caches have grown to what that takes; what grows after that is what a leak
would be; the most, not the last sample, which may fall in a dip). Also
printed: the memory after the first burst (cold) and once a minute. One summary
line; exits 1 when a check fails.
"""
import argparse
import os
from pathlib import Path
import random
import signal
import subprocess
import sys
import tempfile
import time

from clip_perception.ros.environment import collected, local_graph_environment
from clip_perception.ros.executable import node_command
from clip_perception.ros.rosbag_io import bag_images
from clip_perception.tools.assets import DEMO_BAG, DEMO_PARAMS
import numpy as np

RSS_GROWTH_LIMIT = 0.20
LABELS = ['hammer', 'screwdriver', 'wrench', 'tape measure', 'pliers', 'saw', 'chisel',
          'drill', 'clamp', 'file', 'level', 'mallet']


def rss_mb(pid: int, field: str = 'VmRSS') -> float:
    """Resident memory of a process in MiB (Linux /proc): all of it, or one part (RssShmem)."""
    for line in Path(f'/proc/{pid}/status').read_text().splitlines():
        if line.startswith(f'{field}:'):
            return int(line.split()[1]) / 1024
    return float('nan')


class Attacker:
    """The probe: everything it sends and what came back."""

    def __init__(self, rclpy, frames):
        from clip_perception_interfaces.srv import Detect, Find
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.parameter_client import AsyncParameterClient
        from rclpy.qos import QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import CameraInfo, Image
        from vision_msgs.msg import Detection2DArray
        self.Detect, self.Find, self.Image, self.CameraInfo = Detect, Find, Image, CameraInfo
        self.node = rclpy.create_node('hostile_soak')
        reliable = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.image_pub = self.node.create_publisher(Image, 'image', reliable)
        self.depth_pub = self.node.create_publisher(Image, 'depth', reliable)
        self.info_pub = self.node.create_publisher(CameraInfo, 'camera_info', reliable)
        self.answers = collected(self.node, Detection2DArray, 'detections', reliable)
        self.diagnostics = collected(self.node, DiagnosticArray, '/diagnostics', reliable)
        self.parameters = AsyncParameterClient(self.node, 'clip_perception')
        # Every client of a service receives every reply (DDS has one reply topic) and
        # keeps its own: a burst of 50 replies overflows rclpy's default depth of 10.
        replies = QoSProfile(depth=100, reliability=ReliabilityPolicy.RELIABLE)
        self.detect_clients = [self.node.create_client(Detect, '/clip_perception/detect',
                                                       qos_profile=replies)
                               for _ in range(50)]
        self.find_clients = [self.node.create_client(Find, '/clip_perception/find',
                                                     qos_profile=replies)
                             for _ in range(5)]
        self.frames = frames
        self.requests = []  # futures of every service call
        self.parameter_calls = []
        self.tracking = False
        self.rng = random.Random(0)
        self.sent = {'good': 0, 'bad': 0, 'depth': 0, 'parameter_changes': 0}

    def stamp(self, msg):
        now = self.node.get_clock().now().to_msg()
        msg.header.stamp = now
        return msg

    def good_frame(self):
        msg = self.frames[self.sent['good'] % len(self.frames)]
        self.stamp(msg)
        self.depth_pub.publish(self.depth_for(msg))
        self.info_pub.publish(self.info_for(msg))
        self.image_pub.publish(msg)
        self.sent['good'] += 1

    def depth_for(self, msg, stamp=None):
        depth = self.Image(height=msg.height, width=msg.width, encoding='16UC1', is_bigendian=0,
                           step=msg.width * 2)
        depth.header.stamp = stamp or msg.header.stamp
        depth.header.frame_id = msg.header.frame_id
        depth.data = np.full((msg.height, msg.width), 800, np.uint16).tobytes()
        return depth

    def info_for(self, msg, stamp=None):
        info = self.CameraInfo(width=msg.width, height=msg.height)
        info.k = [300.0, 0.0, msg.width / 2, 0.0, 300.0, msg.height / 2, 0.0, 0.0, 1.0]
        info.header.stamp = stamp or msg.header.stamp
        return info

    def depth_tick(self):
        template = self.frames[0]
        stamp = self.node.get_clock().now().to_msg()
        self.depth_pub.publish(self.depth_for(template, stamp))
        self.info_pub.publish(self.info_for(template, stamp))
        self.sent['depth'] += 1

    def bad_frame(self):
        Image = self.Image
        kinds = [
            Image(height=2, width=2, encoding='yuv422', step=4, data=bytes(8)),
            Image(height=100, width=100, encoding='rgb8', step=300, data=bytes(1000)),
            Image(height=0, width=0, encoding='rgb8', step=0, data=b''),
            Image(height=1, width=100_000, encoding='rgb8', step=300_000,
                  data=bytes(300_000)),
            Image(height=8, width=4000, encoding='rgb8', step=12_000, data=bytes(96_000)),
            Image(height=2, width=2, encoding='rgb8', step=2**31 - 1, data=bytes(12)),
            Image(height=2, width=2, encoding='x' * 5000, step=6, data=bytes(12)),
        ]
        msg = kinds[self.sent['bad'] % len(kinds)]
        self.image_pub.publish(self.stamp(msg))
        self.sent['bad'] += 1

    def label_storm(self):
        from rclpy.parameter import Parameter
        for index in range(20):
            if index == 0:
                labels = [f'thing {i}' for i in range(300)]
            elif index % 7 == 3:
                labels = ['hammer', 'Hammer']  # refused: duplicates
            else:
                labels = self.rng.sample(LABELS, self.rng.randint(1, len(LABELS)))
            self.parameter_calls.append(self.parameters.set_parameters(
                [Parameter('labels', value=labels)]))
            self.sent['parameter_changes'] += 1

    def toggle_tracking(self):
        from rclpy.parameter import Parameter
        self.tracking = not self.tracking
        self.parameter_calls.append(self.parameters.set_parameters(
            [Parameter('tracking', value=self.tracking)]))

    def burst(self):
        for index, client in enumerate(self.detect_clients):
            labels = ([f'thing {i}' for i in range(150)] if index % 10 == 9 else
                      self.rng.sample(LABELS, 3))
            self.requests.append(client.call_async(self.Detect.Request(labels=labels)))
        for client in self.find_clients:
            self.requests.append(client.call_async(self.Find.Request(query='a hammer',
                                                                     top_k=3)))

    def answered(self) -> int:
        return sum(future.done() for future in self.requests)

    def status(self):
        return self.diagnostics[-1].status[0] if self.diagnostics else None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--seconds', type=float, default=600.0)
    parser.add_argument('--warmup', type=float, default=60.0,
                        help='seconds of the stream before the memory that growth is '
                        'measured from')
    parser.add_argument('--domain', type=int, default=None,
                        help='ROS_DOMAIN_ID (default: one from the process id)')
    parser.add_argument('--node-log', type=Path, default=None,
                        help="write the node's log here (default: a temporary file)")
    parser.add_argument('--param', action='append', default=[], metavar='NAME:=VALUE',
                        help='another node parameter (repeatable)')
    parser.add_argument('--env', action='append', default=[], metavar='NAME=VALUE',
                        help="another variable in the node's environment (repeatable)")
    args = parser.parse_args(argv)
    os.environ.update(local_graph_environment(args.domain))
    from diagnostic_msgs.msg import DiagnosticStatus
    import rclpy
    from rclpy.executors import SingleThreadedExecutor
    frames = [msg for _, msg in bag_images(DEMO_BAG)]
    log = open(args.node_log, 'w+') if args.node_log else tempfile.TemporaryFile('w+')
    node = subprocess.Popen(node_command() + [
        '--ros-args', '--params-file', str(DEMO_PARAMS), '-p', 'image_reliability:=reliable',
        '-p', 'depth_topics:=[depth]', '-p', 'camera_info_topics:=[camera_info]',
        '-p', 'memory_period:=0.0', '-p', 'watchdog_sec:=20.0',
        *[word for param in args.param for word in ('-p', param)]],
        env=dict(os.environ, **dict(item.split('=', 1) for item in args.env)),
        stdout=log, stderr=subprocess.STDOUT, text=True)  # a file: a full pipe would block
    rclpy.init()
    attacker = Attacker(rclpy, frames)
    executor = SingleThreadedExecutor()
    executor.add_node(attacker.node)

    def spin_until(condition, timeout):
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.05)
        return condition()

    problems = []
    try:
        if not spin_until(lambda: attacker.image_pub.get_subscription_count() > 0 and
                          all(c.service_is_ready() for c in attacker.detect_clients), 60):
            raise SystemExit('the node never came up')
        attacker.good_frame()
        if not spin_until(lambda: attacker.answers, 60):
            raise SystemExit('the node never answered a first frame')
        timers = [attacker.node.create_timer(period, work) for period, work in (
            (0.2, attacker.good_frame), (0.01, attacker.depth_tick), (0.5, attacker.bad_frame),
            (3.0, attacker.label_storm), (5.0, attacker.toggle_tracking),
            (15.0, attacker.burst))]
        attacker.burst()
        started = time.monotonic()
        spin_until(lambda: attacker.answered() == len(attacker.requests), 40)
        rss_cold = rss_mb(node.pid)  # after the first burst
        rss_start = rss_max = rss_cold
        warm, samples = False, []
        while time.monotonic() - started < args.seconds and node.poll() is None:
            spin_until(lambda: False, 1.0)
            rss_max = max(rss_max, rss_mb(node.pid))
            if not warm:  # the reference: the most it held while warming up, not a dip
                rss_start = max(rss_start, rss_mb(node.pid))
                warm = time.monotonic() - started >= min(args.warmup, args.seconds / 2)
            if time.monotonic() - started >= 60 * (len(samples) + 1):
                samples.append((rss_mb(node.pid), rss_mb(node.pid, 'RssShmem')))
        streamed = time.monotonic() - started
        for timer in timers:
            timer.cancel()
        spin_until(lambda: attacker.answered() == len(attacker.requests), 60)
        spin_until(lambda: all(f.done() for f in attacker.parameter_calls), 30)
        answered_before = len(attacker.answers)
        attacker.good_frame()
        if not spin_until(lambda: len(attacker.answers) > answered_before, 30):
            problems.append('the node no longer answers frames')
        rss_end = rss_mb(node.pid)
        spin_until(lambda: False, 2.0)  # a fresh /diagnostics
        status = attacker.status()
        if status is None or status.level == DiagnosticStatus.ERROR:
            problems.append(f'/diagnostics: {status.message if status else "nothing"}')
        answered = attacker.answered()
        if answered != len(attacker.requests):
            waiting = [i for i, f in enumerate(attacker.requests) if not f.done()]
            problems.append(f'{len(waiting)} requests never answered (numbers {waiting[:10]}…)')
        growth = rss_end / rss_start - 1.0
        if growth > RSS_GROWTH_LIMIT:
            problems.append(f'resident memory grew {growth:.0%} (limit '
                            f'{RSS_GROWTH_LIMIT:.0%})')
        refused = sum(1 for f in attacker.requests if f.done() and not f.result().success)
        values = {kv.key: kv.value for kv in status.values} if status else {}
        print(f'soak: seconds {streamed:.0f} good_frames '
              f'{attacker.sent["good"]} bad_frames {attacker.sent["bad"]} depth_messages '
              f'{attacker.sent["depth"]} parameter_changes {attacker.sent["parameter_changes"]} '
              f'frames_answered {len(attacker.answers)} requests {len(attacker.requests)} '
              f'answered {answered} refused {refused} frames_rejected '
              f'{values.get("frames_rejected", "?")} frames_failed '
              f'{values.get("frames_failed", "?")} frames_without_3d '
              f'{values.get("frames_without_3d", "?")} rss_cold_mb {rss_cold:.0f} '
              f'rss_start_mb {rss_start:.0f} '
              f'rss_max_mb {rss_max:.0f} rss_end_mb {rss_end:.0f} rss_growth {growth:+.1%}')
        print('rss each minute (MiB; in brackets the shared memory of Fast DDS): ' +
              ' '.join(f'{mb:.0f} ({shm:.0f})' for mb, shm in samples))
    finally:
        if node.poll() is None:
            node.send_signal(signal.SIGINT)
            try:
                node.wait(timeout=20)
            except subprocess.TimeoutExpired:
                node.kill()
                problems.append('the node did not stop on SIGINT')
        log.seek(0)
        errors = log.read()
        log.close()
        executor.shutdown()
        attacker.node.destroy_node()
        rclpy.try_shutdown()
    if node.returncode not in (0, None):
        problems.append(f'the node exited {node.returncode}: {errors.strip()[-500:]}')
    for problem in problems:
        print(f'soak problem: {problem}', file=sys.stderr)
    return 1 if problems else 0


if __name__ == '__main__':
    sys.exit(main())
