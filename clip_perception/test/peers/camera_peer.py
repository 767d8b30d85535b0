"""
Peer process: a camera publishing rgb8 frames with sensor-data QoS (best effort).

Publishes `--count` frames of `--height`×`--width` at `--rate` Hz on
/camera/image_raw once a subscriber has matched, then exits. It runs with the
environment it is given (Fast DDS transports, profiles), like a camera driver.
"""
import argparse
import time

import numpy as np
import rclpy
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument('--height', type=int, default=480)
    parser.add_argument('--width', type=int, default=640)
    parser.add_argument('--count', type=int, default=30)
    parser.add_argument('--rate', type=float, default=30.0)
    args = parser.parse_args()
    rclpy.init()
    node = rclpy.create_node('camera_peer')
    pub = node.create_publisher(Image, '/camera/image_raw', qos_profile_sensor_data)
    msg = Image(height=args.height, width=args.width, encoding='rgb8', step=args.width * 3)
    msg.header.frame_id = 'camera_peer'
    msg.data = np.full((args.height, args.width, 3), 128, np.uint8).tobytes()
    deadline = time.monotonic() + 60
    while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
        rclpy.spin_once(node, timeout_sec=0.05)
    for index in range(args.count):
        msg.header.stamp.sec = index
        pub.publish(msg)
        rclpy.spin_once(node, timeout_sec=1.0 / args.rate)
    node.destroy_node()
    rclpy.shutdown()
    return 0


if __name__ == '__main__':
    raise SystemExit(main())
