"""
clip_perception_bag_player: a rosbag2 of images replayed in a loop, as a camera.

    ros2 run clip_perception clip_perception_bag_player --ros-args -p rate_hz:=2.0

Reads the colour images of `bag` (default: the bundled demo bag) with rosbags,
and publishes them one after another on `image` (remap it) with sensor-data QoS,
each stamped with the time it is sent, starting over at the end. What the demo
launch file uses to show the node working in rviz or Foxglove without a camera.
A bag that also holds aligned depth images and camera info (write_image_bag's
DEPTH_TOPIC and CAMERA_INFO_TOPIC) plays them on `depth` and `camera_info`
with the same fresh stamp, just before their colour frame (for depth_topics).
"""
import sys

from clip_perception.ros.rosbag_io import (bag_images, CAMERA_INFO_TOPIC, DEPTH_TOPIC,
                                           read_messages)
from clip_perception.tools.assets import DEMO_BAG
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from rclpy.serialization import deserialize_message
from sensor_msgs.msg import CameraInfo, Image


class BagPlayer(Node):

    def __init__(self, **node_options):
        super().__init__('bag_player', **node_options)
        bag = self.declare_parameter('bag', str(DEMO_BAG)).value
        rate_hz = self.declare_parameter('rate_hz', 2.0).value
        self.frames = [msg for _, msg in bag_images(bag)]
        if not self.frames:
            raise ValueError(f'{bag} has no sensor_msgs/msg/Image messages')
        self.recorded = [(m.header.stamp.sec, m.header.stamp.nanosec) for m in self.frames]
        # per colour frame's stamp, its depth image and camera info (when the bag has them)
        self.depth = {}
        for topic, _, _, data in read_messages(bag, [DEPTH_TOPIC, CAMERA_INFO_TOPIC]):
            msg = deserialize_message(data, Image if topic == DEPTH_TOPIC else CameraInfo)
            stamp = (msg.header.stamp.sec, msg.header.stamp.nanosec)
            self.depth.setdefault(stamp, {})[topic] = msg
        self.extra = {topic: self.create_publisher(kind, name, qos_profile_sensor_data)
                      for topic, kind, name in ((DEPTH_TOPIC, Image, 'depth'),
                                                (CAMERA_INFO_TOPIC, CameraInfo, 'camera_info'))
                      if any(topic in found for found in self.depth.values())}
        self.sent = 0
        self.publisher = self.create_publisher(Image, 'image', qos_profile_sensor_data)
        self.create_timer(1.0 / rate_hz, self._publish_next)
        self.get_logger().info(f'playing {len(self.frames)} frames of {bag} in a loop at '
                               f'{rate_hz} Hz on {self.publisher.topic_name}')

    def _publish_next(self) -> None:
        index = self.sent % len(self.frames)
        frame = self.frames[index]
        now = self.get_clock().now().to_msg()
        for topic, msg in self.depth.get(self.recorded[index], {}).items():
            msg.header.stamp = now
            self.extra[topic].publish(msg)
        frame.header.stamp = now
        self.publisher.publish(frame)
        self.sent += 1


def main(args=None) -> int:
    rclpy.init(args=args)
    try:
        rclpy.spin(BagPlayer())
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, OSError) as error:
        rclpy.logging.get_logger('bag_player').fatal(f'cannot start: {error}')
        return 1
    finally:
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
