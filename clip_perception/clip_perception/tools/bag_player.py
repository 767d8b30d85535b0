"""
clip_perception_bag_player: a rosbag2 of images replayed in a loop, as a camera.

    ros2 run clip_perception clip_perception_bag_player --ros-args -p rate_hz:=2.0

Reads the colour images of `bag` (default: the bundled demo bag) with rosbags,
and publishes them one after another on `image` (remap it) with sensor-data QoS,
each stamped with the time it is sent, starting over at the end. What the demo
launch file uses to show the node working in rviz or Foxglove without a camera.
"""
import sys

from clip_perception.ros.rosbag_io import bag_images
from clip_perception.tools.assets import DEMO_BAG
import rclpy
from rclpy.executors import ExternalShutdownException
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import Image


class BagPlayer(Node):

    def __init__(self, **node_options):
        super().__init__('bag_player', **node_options)
        bag = self.declare_parameter('bag', str(DEMO_BAG)).value
        rate_hz = self.declare_parameter('rate_hz', 2.0).value
        self.frames = [msg for _, msg in bag_images(bag)]
        if not self.frames:
            raise ValueError(f'{bag} has no sensor_msgs/msg/Image messages')
        self.sent = 0
        self.publisher = self.create_publisher(Image, 'image', qos_profile_sensor_data)
        self.create_timer(1.0 / rate_hz, self._publish_next)
        self.get_logger().info(f'playing {len(self.frames)} frames of {bag} in a loop at '
                               f'{rate_hz} Hz on {self.publisher.topic_name}')

    def _publish_next(self) -> None:
        frame = self.frames[self.sent % len(self.frames)]
        frame.header.stamp = self.get_clock().now().to_msg()
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
