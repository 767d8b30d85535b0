"""
Node overhead: image message in -> detections out, minus the engine's own time.

Runs the real node in-process over DDS (Fast DDS, LARGE_DATA transports,
localhost) with the ViT-B/32 architecture (random weights). A probe publishes
640×480 rgb8 frames one at a time and times each until its Detection2DArray
arrives; the engine's time is measured around ZeroShotDetector.detect_batch in
the same run. Prints the median of both and
`node_overhead_vs_engine: X.XXX` ((latency - engine) / engine; goal <= 0.10).

    python bench/bench_node.py [--device cuda --precision fp16] [--frames 5]
"""
import argparse
import os
import statistics
import time

from bench_engine import build_encoder, workbench_frame
from clip_perception.engine.model_loading import resolve_device, resolve_precision
from clip_perception.ros.environment import local_graph_environment
from clip_perception.ros.node import ClipPerceptionNode
import rclpy
from rclpy.executors import MultiThreadedExecutor
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--precision', default='auto')
    parser.add_argument('--frames', type=int, default=5)
    parser.add_argument('--quick', action='store_true', help='one frame')
    args, _ = parser.parse_known_args()  # `make bench` passes the engine's options too
    if args.quick:
        args.frames = 1
    device = resolve_device(args.device)
    encoder = build_encoder(device, resolve_precision(args.precision, device))

    os.environ.update(local_graph_environment())  # read by rclpy.init below
    rclpy.init()
    node = ClipPerceptionNode(encoder=encoder, parameter_overrides=[
        rclpy.parameter.Parameter('image_reliability', value='reliable')])
    assert node.start(), 'the node did not start'
    engine_times = []
    detect_batch = node.detector.detect_batch

    def timed_detect_batch(*a, **kw):
        start = time.perf_counter()
        result = detect_batch(*a, **kw)
        if device.type == 'cuda':
            import torch
            torch.cuda.synchronize(device)
        engine_times.append(time.perf_counter() - start)
        return result

    node.detector.detect_batch = timed_detect_batch
    probe = rclpy.create_node('bench_probe')
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub = probe.create_publisher(Image, 'image', qos)
    arrivals = []
    probe.create_subscription(Detection2DArray, 'detections',
                              lambda msg: arrivals.append(time.perf_counter()), qos)
    executor = MultiThreadedExecutor(num_threads=2)
    executor.add_node(node)
    executor.add_node(probe)

    def spin_until(condition, timeout):
        deadline = time.monotonic() + timeout
        while not condition() and time.monotonic() < deadline:
            executor.spin_once(timeout_sec=0.01)
        return condition()

    assert spin_until(lambda: pub.get_subscription_count() > 0, 30), 'node not matched'
    frame = workbench_frame(480, 640)
    msg = Image(height=480, width=640, encoding='rgb8', step=640 * 3)
    msg.data = frame.tobytes()
    latencies = []
    for index in range(args.frames + 1):  # the first frame warms up
        msg.header.stamp.sec = index
        sent = time.perf_counter()
        pub.publish(msg)
        assert spin_until(lambda: len(arrivals) > index, 120), 'no detections'
        latencies.append(arrivals[index] - sent)
    node.close()
    executor.shutdown()
    rclpy.try_shutdown()

    latency = statistics.median(latencies[1:])
    engine = statistics.median(engine_times[1:])
    print(f'node: {args.frames} frames 640x480 rgb8 on {device}; '
          f'latency message->detections p50 {latency * 1000:.1f} ms, '
          f'engine p50 {engine * 1000:.1f} ms, overhead {(latency - engine) * 1000:.1f} ms')
    print(f'node_overhead_vs_engine: {(latency - engine) / engine:.3f}')


if __name__ == '__main__':
    main()
