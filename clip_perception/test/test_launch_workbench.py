"""
launch_testing test of workbench.launch.py (upstream launch_testing API).

Runs under `colcon test` / `launch_test` on a ROS 2 install; skipped where
launch_testing is not installed. It launches the package's launch file with a
random-weight CLIP built on the spot, publishes an image every 2 s until
detections arrive (a busy machine may take the first before the node is ready),
then checks that the node exited cleanly on shutdown.
"""
import os
import tempfile
import time
import unittest

import pytest

launch_testing = pytest.importorskip('launch_testing',
                                     reason='launch_testing is not installed (no ROS 2)')

# After the skip, so sorted on their own (I100).
from ament_index_python.packages import get_package_share_directory  # noqa: E402, I100
import launch  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402
import launch_testing.actions  # noqa: E402
import launch_testing.asserts  # noqa: E402
import numpy as np  # noqa: E402
import rclpy  # noqa: E402
from sensor_msgs.msg import Image  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

IMAGE_TOPIC = '/launch_test/image_raw'
pytestmark = pytest.mark.slow


@pytest.mark.launch_test
def generate_test_description():
    from clip_perception.tools.model_building import build_random_model_directory
    model = build_random_model_directory(os.path.join(tempfile.mkdtemp(), 'model'))
    workbench = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(os.path.join(
            get_package_share_directory('clip_perception'), 'launch', 'workbench.launch.py')),
        launch_arguments={'model': str(model), 'device': 'cpu',
                          'image_topic': IMAGE_TOPIC}.items())
    return launch.LaunchDescription([workbench, launch_testing.actions.ReadyToTest()])


class TestDetectionsArrive(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        rclpy.init()
        cls.node = rclpy.create_node('launch_test_probe')

    @classmethod
    def tearDownClass(cls):
        cls.node.destroy_node()
        rclpy.shutdown()

    def test_an_image_gives_detections_with_its_header(self):
        received = []
        pub = self.node.create_publisher(Image, IMAGE_TOPIC, 10)
        self.node.create_subscription(Detection2DArray, '/detections', received.append, 10)
        deadline = time.monotonic() + 60
        while pub.get_subscription_count() == 0 and time.monotonic() < deadline:
            rclpy.spin_once(self.node, timeout_sec=0.1)
        msg = Image(height=48, width=64, encoding='rgb8', step=64 * 3)
        msg.header.frame_id = 'launch_test_camera'
        msg.data = np.full((48, 64, 3), 128, np.uint8).tobytes()
        next_send = 0.0
        while not received and time.monotonic() < deadline:
            if time.monotonic() >= next_send:  # again until answered: the first may be
                pub.publish(msg)  # sent before the node's subscription is ready for it
                next_send = time.monotonic() + 2.0
            rclpy.spin_once(self.node, timeout_sec=0.1)
        self.assertTrue(received, 'no detections within 60 s')
        self.assertEqual(received[0].header.frame_id, 'launch_test_camera')


@launch_testing.post_shutdown_test()
class TestShutdown(unittest.TestCase):

    def test_exit_code(self, proc_info):
        launch_testing.asserts.assertExitCodes(proc_info)
