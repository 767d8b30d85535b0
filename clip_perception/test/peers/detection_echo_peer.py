"""
Peer process of test_ros_interfaces: echo detections for sample images.

Peer process: receives sensor_msgs/Image on `image`, checks every field
against the shared sample, answers a vision_msgs/Detection2DArray on `detections`.

A received image that differs from the sample is answered with an empty
detection list whose frame_id names the mismatch, so the test sees why.
Exits after answering `--count` images or after `--timeout` seconds. Started with
test/ on PYTHONPATH (for message_samples).
"""
import argparse
import sys
import time

from message_samples import detections_for, IMAGE_HEIGHT, image_pixels, IMAGE_WIDTH
import numpy as np
import rclpy
from rclpy.duration import Duration
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray


def image_mismatch(msg: Image) -> str:
    expected = (IMAGE_HEIGHT, IMAGE_WIDTH, 'rgb8', 0, IMAGE_WIDTH * 3)
    got = (msg.height, msg.width, msg.encoding, msg.is_bigendian, msg.step)
    if got != expected:
        return f'metadata {got} != {expected}'
    if msg.header.frame_id != 'camera_optical_frame' or msg.header.stamp.nanosec != 123_456_789:
        return f'header {msg.header}'
    pixels = np.frombuffer(msg.data, np.uint8).reshape(IMAGE_HEIGHT, IMAGE_WIDTH, 3)
    if not np.array_equal(pixels, image_pixels()):
        return 'pixels differ'
    return ''


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument('--count', type=int, default=3)
    parser.add_argument('--timeout', type=float, default=30.0)
    args = parser.parse_args()

    rclpy.init()
    node = rclpy.create_node('detection_echo_peer')
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pub = node.create_publisher(Detection2DArray, 'detections', qos)
    answered = []

    def on_image(msg: Image) -> None:
        problem = image_mismatch(msg)
        if problem:
            reply = Detection2DArray()
            reply.header.frame_id = 'MISMATCH: ' + problem
        else:
            reply = detections_for(msg)
        pub.publish(reply)
        answered.append(msg.header.stamp.sec)

    node.create_subscription(Image, 'image', on_image, qos)
    deadline = time.monotonic() + args.timeout
    while rclpy.ok() and len(answered) < args.count and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.1)
    # Let the last reply leave before the participant goes away.
    end = time.monotonic() + 2.0
    while pub.get_subscription_count() > 0 and time.monotonic() < end:
        if pub.wait_for_all_acked(Duration(seconds=0.2)):
            break
    node.destroy_node()
    rclpy.shutdown()
    return 0 if len(answered) >= args.count else 1


if __name__ == '__main__':
    sys.exit(main())
