"""The ROS 2 runtime and the vision_msgs interfaces, over real DDS."""
import json
import os
from pathlib import Path
import subprocess
import sys

from message_samples import detections_for, sample_image
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
import vision_msgs.msg
from vision_msgs.msg import Detection2DArray

# Nodes over DDS, processes: the slow tier (make test runs it, make test-fast does not).
pytestmark = pytest.mark.slow

PEER = Path(__file__).parent / 'peers' / 'detection_echo_peer.py'

# RIHS01 hashes of upstream vision_msgs 4.x, built with the Kilted toolchain.
UPSTREAM_TYPE_HASHES = {
    'Point2D': 'RIHS01_eab0e83f44ab4de92ceaf76dd7d0e7638f2bdd1d16ffbe16c7a136c48e407247',
    'Pose2D': 'RIHS01_b0b5d1d7b4c20dd4fcde3ed1d4b289a919290572007d67a97043814db25d3648',
    'BoundingBox2D': 'RIHS01_008eacbb0cf8f26e83795547bed013eec3675485ef386ec056d80eaaf1c1ce2f',
    'ObjectHypothesis': 'RIHS01_51da43cec11c01957a64d1e05a24acd18aae7745ec30b74348ad5f6d634f7f90',
    'ObjectHypothesisWithPose':
        'RIHS01_41c12344c0396c48b81df12467c192d99b2a0eb1463c5c37194e4223251c80bc',
    'Detection2D': 'RIHS01_0d12b69df5c593b3455b7346fac8205437a7d4bcb09b9e0e0b2dde787ded38ea',
    'Detection2DArray': 'RIHS01_214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968',
    'Classification': 'RIHS01_f74db28d0eaef3afb78f48bf2161cd709a1383a0309d3454383b25be11345143',
    'VisionClass': 'RIHS01_1e4a11f0fed50b5623cb8ff26ca0e37952a48a9c074d16f804b44e9164c2037a',
    'LabelInfo': 'RIHS01_3d37df4015cdf660cc851c51897f2acd957e1ca6205ba0a99aebffb9406b0783',
    'BoundingBox3D': 'RIHS01_bbb73a65c163d7f9bb29009c7bde9f7faa576bd2d23299c4511d19230dab4698',
    'BoundingBox3DArray':
        'RIHS01_a81938db9576b10c2eecd7c5a5da3eac496efd00221b25ed051dfbc81fb56da6',
    'Detection3D': 'RIHS01_ddd703be132ab0b69d33121f1bb034132bfbb3b0ac5f9fb1516005ba1c8a265b',
    'Detection3DArray': 'RIHS01_793f5eab9595ac1c0da07873cc859db42eae51f0ee76056db8562515d830e018',
}


@pytest.mark.parametrize('type_name', sorted(UPSTREAM_TYPE_HASHES))
def test_type_hash_matches_upstream_on_the_wire(ros, type_name):
    """The hash rclpy announces in discovery is what a real vision_msgs peer checks."""
    msg_type = getattr(vision_msgs.msg, type_name)
    node = ros.node(f'hash_probe_{type_name.lower()}')
    topic = f'/hash_probe/{type_name.lower()}'
    node.create_publisher(msg_type, topic, 1)
    assert ros.spin_until(lambda: node.get_publishers_info_by_topic(topic), timeout_sec=5.0)
    infos = node.get_publishers_info_by_topic(topic)
    assert infos[0].topic_type == f'vision_msgs/msg/{type_name}'
    assert str(infos[0].topic_type_hash) == UPSTREAM_TYPE_HASHES[type_name]


def test_installed_interface_descriptions_carry_upstream_hashes():
    """The installed share/vision_msgs/msg/*.json agree too (what rosbag2 records)."""
    from ament_index_python.packages import get_package_share_directory
    share = Path(get_package_share_directory('vision_msgs')) / 'msg'
    for type_name, expected in UPSTREAM_TYPE_HASHES.items():
        description = json.loads((share / f'{type_name}.json').read_text())
        hashes = {h['type_name']: h['hash_string'] for h in description['type_hashes']}
        assert hashes[f'vision_msgs/msg/{type_name}'] == expected


def assert_detections_equal(got: Detection2DArray, expected: Detection2DArray) -> None:
    assert got.header.frame_id == expected.header.frame_id
    assert (got.header.stamp.sec, got.header.stamp.nanosec) == \
        (expected.header.stamp.sec, expected.header.stamp.nanosec)
    assert len(got.detections) == len(expected.detections)
    for g, e in zip(got.detections, expected.detections):
        assert g.header == e.header
        assert g.id == e.id
        assert len(g.results) == len(e.results) == 1
        assert g.results[0].hypothesis.class_id == e.results[0].hypothesis.class_id
        assert g.results[0].hypothesis.score == e.results[0].hypothesis.score
        assert g.results[0].pose.pose.position.x == e.results[0].pose.pose.position.x
        assert list(g.results[0].pose.covariance) == list(e.results[0].pose.covariance)
        assert g.bbox.center.position.x == e.bbox.center.position.x
        assert g.bbox.center.position.y == e.bbox.center.position.y
        assert g.bbox.center.theta == e.bbox.center.theta
        assert (g.bbox.size_x, g.bbox.size_y) == (e.bbox.size_x, e.bbox.size_y)


def test_image_and_detections_cross_two_processes(ros):
    """
    Two processes exchange an image and detections, checked field by field.

    A 640×480 rgb8 Image goes to a peer process, which checks it field by field
    and answers a Detection2DArray that this process checks field by field.
    """
    count = 3
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(PEER.parents[1]), *filter(None, [os.environ.get('PYTHONPATH')])]))
    peer = subprocess.Popen([sys.executable, str(PEER), '--count', str(count), '--timeout', '60'],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        node = ros.node('two_process_test')
        qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        pub = node.create_publisher(Image, 'image', qos)
        replies = []
        sub = node.create_subscription(Detection2DArray, 'detections', replies.append, qos)
        assert ros.wait_for_subscribers(pub, timeout_sec=30.0), 'peer never subscribed'
        assert ros.wait_for_publishers(sub, timeout_sec=30.0), 'peer never advertised'
        sent = []
        for seq in range(count):
            sent.append(sample_image(seq))
            pub.publish(sent[-1])
            assert ros.spin_until(lambda: len(replies) > seq, timeout_sec=15.0), \
                f'no reply to image {seq}'
        for image, reply in zip(sent, replies):
            assert not reply.header.frame_id.startswith('MISMATCH'), reply.header.frame_id
            assert_detections_equal(reply, detections_for(image))
        assert peer.wait(timeout=30) == 0, peer.stdout.read()
    finally:
        if peer.poll() is None:
            peer.kill()
            peer.wait()
