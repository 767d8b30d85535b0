"""Building blocks for node tests: images as messages, a node with the colour encoder."""
import threading

from clip_perception.ros.environment import collected
from clip_perception.ros.node import ClipPerceptionNode
from clip_perception.ros.parameters import read_parameters_file
from clip_perception.ros.rosbag_io import read_messages
from clip_perception.tools.assets import DEMO_BAG, DEMO_PARAMS
from colour_encoder import ColourEncoder
import numpy as np
from rclpy.executors import SingleThreadedExecutor
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Detection2DArray

RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
COLOUR_PARAMETERS = {
    'labels': ['red', 'green', 'blue'],
    'prompt_templates': ['a {} thing'],
    'background_prompts': ['a grey background'],
    'score_threshold': 0.6,
    'image_reliability': 'reliable',
}


class Probe:
    """A node of the test's own: publishes images on `image`, collects `detections`."""

    def __init__(self, ros, name: str, namespace: str = ''):
        self.ros = ros
        self.node = ros.node(name)
        prefix = f'/{namespace}/' if namespace else ''  # the node under test's namespace
        self.image_pub = self.node.create_publisher(Image, prefix + 'image', RELIABLE)
        self.detections = collected(self.node, Detection2DArray, prefix + 'detections',
                                    RELIABLE)


def diagnostic_values(array) -> dict[str, str]:
    """Return the key/value pairs of a DiagnosticArray's first status (the node's only one)."""
    return {kv.key: kv.value for kv in array.status[0].values}


def image_message(pixels, frame_id='camera', stamp_sec=100, encoding='rgb8', padding=0):
    """Build an Image from H×W×C uint8 `pixels` already in `encoding`'s channel order."""
    height, width = pixels.shape[:2]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    msg = Image(height=height, width=width, encoding=encoding, is_bigendian=0,
                step=width * channels + padding)
    msg.header.frame_id = frame_id
    msg.header.stamp.sec = stamp_sec
    rows = pixels.reshape(height, width * channels)
    if padding:
        rows = np.concatenate([rows, np.full((height, padding), 7, np.uint8)], axis=1)
    msg.data = np.ascontiguousarray(rows).tobytes()
    return msg


def start_colour_node(ros, encoder=None, **overrides):
    """Start a ClipPerceptionNode on `ros`'s context with the colour encoder."""
    values = {**COLOUR_PARAMETERS, **overrides}
    node = ClipPerceptionNode(encoder=encoder or ColourEncoder(), context=ros.context,
                              parameter_overrides=[Parameter(k, value=v)
                                                   for k, v in values.items()])
    ros.add_node(node)
    assert node.start(), 'the node did not configure and activate'
    return node


def threaded_node(ros, encoder=None, namespace='', **overrides):
    """
    Start a node with the colour encoder in an executor of its own, as `main` runs it.

    Return the node and a function that stops it.
    """
    values = {**COLOUR_PARAMETERS, **overrides}
    node = ClipPerceptionNode(encoder=encoder or ColourEncoder(), context=ros.context,
                              namespace=namespace,
                              parameter_overrides=[Parameter(k, value=v)
                                                   for k, v in values.items()])
    executor = SingleThreadedExecutor(context=ros.context)
    executor.add_node(node)
    assert node.start()
    thread = threading.Thread(target=executor.spin, daemon=True)
    thread.start()

    def stop():
        executor.shutdown()
        thread.join(timeout=5)
        node.destroy_node()
    return node, stop


def replay_demo_bag(ros, **overrides):
    """
    Start the node with config/demo.yaml (and `overrides`), replay the demo bag into it.

    Each frame is sent once the previous one is answered. Return the node, the
    player node and the Detection2DArray messages received, one per frame.
    """
    values = {**read_parameters_file(DEMO_PARAMS), 'image_reliability': 'reliable',
              **overrides}
    node = ClipPerceptionNode(context=ros.context, parameter_overrides=[
        Parameter(name, value=value) for name, value in values.items()])
    ros.add_node(node)
    assert node.start()
    player = ros.node('demo_bag_player')
    pub = player.create_publisher(Image, '/image', RELIABLE)
    received = []
    player.create_subscription(Detection2DArray, '/detections', received.append, RELIABLE)
    assert ros.wait_for_subscribers(pub)
    assert ros.spin_until(lambda: node.outputs.detections_pub.get_subscription_count() > 0)
    for index, (_, _, _, data) in enumerate(read_messages(DEMO_BAG)):
        pub.publish(data)  # the recorded CDR, as `ros2 bag play` sends it
        assert ros.spin_until(lambda: len(received) > index, 60), f'frame {index} unanswered'
    return node, player, received
