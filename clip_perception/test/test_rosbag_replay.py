"""
Rosbag replay, recorded and compared field by field.

Rosbag replay: a rosbag2 of camera frames is replayed into the node over DDS
(raw CDR as recorded), the node's outputs are recorded into a second bag, and
that bag is read back and compared field by field with what the frames show.
"""
from clip_perception.engine.boxes import pairwise_iou
from clip_perception.ros.messages import box_corners
from clip_perception.ros.rosbag_io import (BagFrame, BagRecorder, read_messages, typestore,
                                           write_image_bag)
from colour_encoder import colour_scene
from node_helpers import start_colour_node
import numpy as np
import pytest
from rclpy.qos import QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Classification, Detection2DArray

# Nodes over DDS, processes: the slow tier (make test runs it, make test-fast does not).
pytestmark = pytest.mark.slow
# Bags are read and written with rosbags (PyPI), an optional test dependency.
pytest.importorskip('rosbags', reason='rosbags is not installed (pip install rosbags)')

# (squares drawn on a grey 160×120 frame) per frame; the labels the node must find.
SCENES = [
    [('red', 40, 30, 100, 90)],
    [],
    [('blue', 90, 50, 150, 110)],
    [('red', 5, 5, 55, 55), ('green', 100, 60, 155, 115)],
    [],
]
RELIABLE = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)


@pytest.fixture(params=['sqlite3', 'mcap'])
def input_bag(tmp_path, request):
    frames = [BagFrame(colour_scene(120, 160, squares), stamp_ns=1_700_000_000 * 10**9 +
                       index * 100_000_000, frame_id='bench_camera')
              for index, squares in enumerate(SCENES)]
    return write_image_bag(tmp_path / f'input_{request.param}', frames, storage=request.param)


def test_replayed_bag_gives_the_expected_recorded_detections(ros, input_bag, tmp_path):
    node = start_colour_node(ros)
    player = ros.node('bag_player')
    pub = player.create_publisher(Image, '/image', RELIABLE)
    outputs = {'/detections': Detection2DArray, '/classification': Classification}
    recorder = BagRecorder(player, tmp_path / 'output', outputs, RELIABLE)
    assert ros.wait_for_subscribers(pub)
    assert ros.spin_until(lambda: node.outputs.detections_pub.get_subscription_count() >= 1)
    replayed = 0
    for topic, msgtype, _, data in read_messages(input_bag):
        assert (topic, msgtype) == ('/camera/image_raw', 'sensor_msgs/msg/Image')
        pub.publish(data)  # the recorded CDR, as `ros2 bag play` sends it
        replayed += 1
        assert ros.spin_until(lambda: recorder.counts['/detections'] == replayed and
                              recorder.counts['/classification'] == replayed), replayed
    recorder.close()
    assert replayed == len(SCENES)

    store = typestore()
    recorded = [(msgtype, store.deserialize_cdr(data, msgtype)) for _, msgtype, _, data in
                read_messages(tmp_path / 'output', ['/detections'])]
    assert len(recorded) == len(SCENES)
    for index, ((msgtype, out), squares) in enumerate(zip(recorded, SCENES)):
        assert msgtype == 'vision_msgs/msg/Detection2DArray'
        assert out.header.frame_id == 'bench_camera'
        assert (out.header.stamp.sec, out.header.stamp.nanosec) == \
            (1_700_000_000, index * 100_000_000)
        assert sorted(d.results[0].hypothesis.class_id for d in out.detections) == \
            sorted(name for name, *_ in squares), index
        for det in out.detections:
            assert det.header.frame_id == out.header.frame_id
            assert len(det.results) == 1 and 0.6 <= det.results[0].hypothesis.score <= 1.0
            assert det.bbox.center.theta == 0.0 and det.id == ''
            box = box_corners(det)
            truth = [sq[1:] for sq in squares if sq[0] == det.results[0].hypothesis.class_id]
            assert pairwise_iou(np.array([box]), np.array(truth, float)).max() >= 0.5

    classifications = [store.deserialize_cdr(data, msgtype) for _, msgtype, _, data in
                       read_messages(tmp_path / 'output', ['/classification'])]
    assert len(classifications) == len(SCENES)
    for out in classifications:
        assert sorted(r.class_id for r in out.results) == ['blue', 'green', 'red']
    assert classifications[0].results[0].class_id == 'red'
