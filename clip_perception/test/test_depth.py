"""3D from aligned depth: depth images, the pinhole model, stamp matching, and over DDS."""
import math

from clip_perception.engine.depth import box_to_3d, Pinhole
from clip_perception.ros.image_conversion import depth_from_raw, ImageError
from clip_perception.ros.stamp_matching import NoMatch, StampBuffer
from colour_encoder import colour_scene
from node_helpers import image_message, RELIABLE, start_colour_node
import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection2DArray, Detection3DArray

CAMERA = Pinhole(fx=200.0, fy=200.0, cx=80.0, cy=60.0)
SQUARE = (40, 30, 100, 90)  # x0, y0, x1, y1 in a 160×120 frame


def bench_depth(bench=1.0, tool=0.9, box=SQUARE, shape=(120, 160)) -> np.ndarray:
    depth = np.full(shape, bench, np.float32)
    x0, y0, x1, y1 = box
    depth[y0:y1, x0:x1] = tool
    return depth


def test_a_box_is_placed_by_the_median_depth_through_the_pinhole():
    box = box_to_3d(bench_depth(), SQUARE, CAMERA)
    assert box.center == pytest.approx(((70 - 80) * 0.9 / 200, (60 - 60) * 0.9 / 200, 0.9))
    assert box.size[:2] == pytest.approx((60 * 0.9 / 200, 60 * 0.9 / 200))
    assert box.size[2] == pytest.approx(0.01)  # flat: the least depth extent
    assert box.distance == pytest.approx(math.hypot(0.045, 0.9))


def test_holes_in_the_depth_are_ignored_and_an_empty_box_gives_nothing():
    depth = bench_depth()
    depth[30:60, 40:100] = 0.0  # half the tool unmeasured
    depth[60:70, 40:100] = np.nan
    assert box_to_3d(depth, SQUARE, CAMERA).center[2] == pytest.approx(0.9)
    depth[30:90, 40:100] = 0.0
    assert box_to_3d(depth, SQUARE, CAMERA) is None
    assert box_to_3d(bench_depth(), (150, 110, 400, 300), CAMERA).center[2] == 1.0  # clipped


def test_depth_images_in_millimetres_and_metres_with_padding_and_byte_order():
    millimetres = np.array([[0, 1000, 2500], [400, 0, 65535]], np.uint16)
    padded = np.concatenate([millimetres.view(np.uint8), np.zeros((2, 2), np.uint8)], axis=1)
    metres = depth_from_raw(2, 3, '16UC1', 8, 0, padded.tobytes())
    assert metres.dtype == np.float32
    np.testing.assert_allclose(metres, [[0, 1.0, 2.5], [0.4, 0, 65.535]], rtol=1e-6)
    big = depth_from_raw(2, 3, '16UC1', 6, 1, millimetres.astype('>u2').tobytes())
    np.testing.assert_array_equal(big, metres)
    floats = np.array([[1.5, np.nan]], np.float32)
    assert np.isnan(depth_from_raw(1, 2, '32FC1', 8, 0, floats.tobytes())[0, 1])
    with pytest.raises(ImageError, match='unsupported depth encoding'):
        depth_from_raw(1, 1, 'rgb8', 3, 0, b'\0\0\0')
    with pytest.raises(ImageError, match='data has 3 bytes'):
        depth_from_raw(2, 1, '16UC1', 2, 0, b'\0\0\0')
    with pytest.raises(ValueError, match='no usable focal lengths'):
        Pinhole.from_k([0.0] * 9)


def test_stamp_matching_takes_the_closest_message_within_the_slop():
    buffer = StampBuffer('/depth', size=3)
    with pytest.raises(NoMatch, match='nothing received on /depth yet'):
        buffer.closest(0, 10)
    for stamp in (100, 200, 300, 400):  # the oldest falls out
        buffer.add(stamp, f'm{stamp}')
    assert buffer.closest(290, 20) == 'm300'
    assert buffer.closest(251, 60) == 'm300'
    with pytest.raises(NoMatch, match=r'\+0\.000 s|from the frame'):
        buffer.closest(100, 20)  # m100 is gone; m200 is 100 ns away


def depth_message(depth: np.ndarray, stamp: int, encoding='32FC1') -> Image:
    msg = Image(height=depth.shape[0], width=depth.shape[1], encoding=encoding, is_bigendian=0)
    if encoding == '16UC1':
        depth = np.nan_to_num(depth * 1000).astype(np.uint16)
    msg.step = depth.shape[1] * depth.dtype.itemsize
    msg.data = depth.tobytes()
    msg.header.stamp.sec = stamp
    msg.header.frame_id = 'camera_optical'
    return msg


def info_message(stamp: int) -> CameraInfo:
    msg = CameraInfo(height=120, width=160)
    msg.k = [CAMERA.fx, 0.0, CAMERA.cx, 0.0, CAMERA.fy, CAMERA.cy, 0.0, 0.0, 1.0]
    msg.header.stamp.sec = stamp
    return msg


@pytest.mark.slow
def test_detections_in_3d_over_dds_and_what_happens_without_good_depth(ros, capfd):
    node = start_colour_node(ros, depth_topics=['depth'], camera_info_topics=['camera_info'],
                             tracking=True)
    probe = ros.node('depth_probe')
    pubs = {name: probe.create_publisher(kind, name, RELIABLE) for name, kind in
            (('image', Image), ('depth', Image), ('camera_info', CameraInfo))}
    found_2d, found_3d = [], []
    probe.create_subscription(Detection2DArray, 'detections', found_2d.append, RELIABLE)
    probe.create_subscription(Detection3DArray, 'detections_3d', found_3d.append, RELIABLE)
    for pub in pubs.values():
        assert ros.wait_for_subscribers(pub)
    assert ros.spin_until(lambda: node.outputs.detections_3d_pub.get_subscription_count() > 0)

    def frame(stamp, depth=None, depth_stamp=None, **depth_options):
        if depth is not None:
            pubs['depth'].publish(depth_message(depth, depth_stamp or stamp, **depth_options))
            pubs['camera_info'].publish(info_message(depth_stamp or stamp))
            ros.spin_until(lambda: False, 0.3)  # let them arrive before the colour frame
        sent = len(found_2d) + 1
        pubs['image'].publish(image_message(colour_scene(squares=[('red', *SQUARE)]),
                                            'camera_optical', stamp))
        assert ros.spin_until(lambda: len(found_2d) == sent, 10), 'no 2D answer'

    frame(9)  # before any depth: 2D only
    frame(1, bench_depth(), encoding='16UC1')
    assert ros.spin_until(lambda: len(found_3d) == 1, 5)
    (d3,) = found_3d[0].detections
    (d2,) = found_2d[1].detections
    assert found_3d[0].header.frame_id == 'camera_optical'
    assert found_3d[0].header.stamp.sec == 1
    assert d3.results[0].hypothesis.class_id == 'red' and d3.id == d2.id != ''
    x0, y0, x1, y1 = (d2.bbox.center.position.x - d2.bbox.size_x / 2,
                      d2.bbox.center.position.y - d2.bbox.size_y / 2,
                      d2.bbox.center.position.x + d2.bbox.size_x / 2,
                      d2.bbox.center.position.y + d2.bbox.size_y / 2)
    expected = box_to_3d(bench_depth(), (x0, y0, x1, y1), CAMERA)
    position = d3.bbox.center.position
    assert (position.x, position.y, position.z) == pytest.approx(expected.center, abs=1e-3)
    assert position.z == pytest.approx(0.9, abs=1e-3)
    assert d3.bbox.center.orientation.w == 1.0
    assert d3.bbox.size.x == pytest.approx(expected.size[0], abs=1e-3)

    frame(2, bench_depth(), depth_stamp=5)  # stamped 3 s off: more than depth_slop
    frame(3)  # nothing new: the nearest depth is the one stamped 5
    frame(4, bench_depth(shape=(60, 80)))  # another size
    holes = bench_depth()
    holes[SQUARE[1]:SQUARE[3], SQUARE[0]:SQUARE[2]] = np.nan
    holes[:, :] = np.where(np.isnan(holes), np.nan, 0.0)
    frame(6, holes)  # no valid depth anywhere: the detection is left out
    assert ros.spin_until(lambda: len(found_3d) == 2, 5)
    assert found_3d[1].header.stamp.sec == 6 and found_3d[1].detections == []
    assert node.counters['without_3d'] == 4 and node.counters['processed'] == 6
    logged = capfd.readouterr().err
    assert 'nothing received on /depth yet' in logged
    assert 'more than depth_slop' in logged
    assert 'the depth image is 80×60, the colour image 160×120' in logged
    assert 'detections without valid depth (0, NaN or out of range)' in logged


def test_depth_topics_must_name_one_topic_per_camera(ros, capfd):
    from clip_perception.ros.node import ClipPerceptionNode
    from colour_encoder import ColourEncoder
    from rclpy.parameter import Parameter
    node = ClipPerceptionNode(encoder=ColourEncoder(), context=ros.context, parameter_overrides=[
        Parameter('depth_topics', value=['depth']), Parameter('image_topics', value=['a', 'b']),
        Parameter('camera_info_topics', value=['info'])])
    ros.add_node(node)
    assert not node.start()
    assert 'depth_topics (1) and camera_info_topics (1) must name one topic per image topic (2)' \
        in capfd.readouterr().err


@pytest.mark.slow
def test_a_replayed_bag_with_depth_and_camera_info_gives_positions_in_metres(ros, tmp_path):
    pytest.importorskip('rosbags', reason='rosbags is not installed (pip install rosbags)')
    from clip_perception.ros.rosbag_io import (BagFrame, CAMERA_INFO_TOPIC, DEPTH_TOPIC,
                                               read_messages, write_image_bag)
    k = (CAMERA.fx, 0.0, CAMERA.cx, 0.0, CAMERA.fy, CAMERA.cy, 0.0, 0.0, 1.0)
    squares = [(10, 10, 50, 50), (60, 40, 110, 90), (100, 20, 150, 70)]
    bag = write_image_bag(tmp_path / 'bag', [
        BagFrame(colour_scene(squares=[('blue', *box)]), (i + 1) * 10**9, 'optical',
                 bench_depth(bench=0.8, tool=0.75, box=box), k)
        for i, box in enumerate(squares)])
    node = start_colour_node(ros, image_topics=['/camera/image_raw'],
                             depth_topics=[DEPTH_TOPIC], camera_info_topics=[CAMERA_INFO_TOPIC])
    player = ros.node('player')
    pubs = {topic: player.create_publisher(kind, topic, RELIABLE) for topic, kind in
            (('/camera/image_raw', Image), (DEPTH_TOPIC, Image), (CAMERA_INFO_TOPIC, CameraInfo))}
    found = []
    player.create_subscription(Detection3DArray, '/detections_3d', found.append, RELIABLE)
    for pub in pubs.values():
        assert ros.wait_for_subscribers(pub)
    assert ros.spin_until(lambda: node.outputs.detections_3d_pub.get_subscription_count() > 0)
    for topic, _, _, data in read_messages(bag):  # depth and info first, then the frame
        pubs[topic].publish(data)
        if topic == '/camera/image_raw':
            count = len(found) + 1
            assert ros.spin_until(lambda: len(found) == count, 10), topic
        else:
            ros.spin_until(lambda: False, 0.1)
    for msg, box in zip(found, squares):
        (detection,) = msg.detections
        expected = box_to_3d(bench_depth(bench=0.8, tool=0.75, box=box), box, CAMERA)
        position = detection.bbox.center.position
        assert position.z == pytest.approx(0.75, abs=1e-3)  # the tool's top, not the bench
        # within the colour double's box accuracy (a few pixels at 0.75 m over 200 px)
        assert (position.x, position.y) == pytest.approx(expected.center[:2], abs=0.03)
        assert msg.header.frame_id == 'optical'
