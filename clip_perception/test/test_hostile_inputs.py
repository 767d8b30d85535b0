"""
What a hostile run found, over DDS: each defect's repro and the behaviour expected.

The node runs with the colour encoder (deterministic) or the demo model; the
probe sends what an attacker would: rejected frames of several kinds, frames
that make inference or publishing fail, extreme aspect ratios, bursts of
service requests, stamps far in the future, depth at a high rate.
"""
import threading
import time

from clip_perception.ros import outputs as outputs_module, planner_services
from clip_perception.ros.environment import collected
from clip_perception.ros.node import ClipPerceptionNode
from clip_perception_interfaces.srv import Detect, Find
from colour_encoder import colour_scene, ColourEncoder
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from node_helpers import (diagnostic_values, image_message, Probe, RELIABLE, replay_demo_bag,
                          start_colour_node, threaded_node)
import numpy as np
import pytest
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image
from vision_msgs.msg import Detection3DArray

pytestmark = pytest.mark.slow

RED = ('red', 40, 30, 100, 90)


class Attacker(Probe):
    """A probe node: sends frames, depth and requests; collects the node's outputs."""

    def __init__(self, ros, depth=False):
        super().__init__(ros, 'attacker')
        self.detections_3d = []
        self.diagnostics = collected(self.node, DiagnosticArray, '/diagnostics', RELIABLE)
        self.pubs = [self.image_pub]
        if depth:
            self.depth_pub = self.node.create_publisher(Image, 'depth', RELIABLE)
            self.info_pub = self.node.create_publisher(CameraInfo, 'camera_info', RELIABLE)
            self.node.create_subscription(Detection3DArray, 'detections_3d',
                                          self.detections_3d.append, RELIABLE)
            self.pubs += [self.depth_pub, self.info_pub]
        for pub in self.pubs:
            assert ros.wait_for_subscribers(pub), 'the node never subscribed'

    def send(self, msg, answered=True, timeout=15.0):
        """Publish a frame; with `answered`, wait for its detections."""
        count = len(self.detections)
        self.image_pub.publish(msg)
        if answered:
            assert self.ros.spin_until(lambda: len(self.detections) > count, timeout), \
                'the frame was never answered'

    def send_handled(self, node, msg, counter, timeout=15.0):
        """Publish a frame and wait until the node counts it under `counter`."""
        before = node.counters[counter]
        self.image_pub.publish(msg)
        assert self.ros.spin_until(lambda: node.counters[counter] > before, timeout), \
            node.counters

    def good_frame(self, stamp=1):
        return image_message(colour_scene(squares=[RED]), 'camera', stamp)

    def status(self) -> DiagnosticStatus | None:
        return self.diagnostics[-1].status[0] if self.diagnostics else None


# --- 1, 2: the inference thread survives anything a frame does --------------------------
@pytest.mark.parametrize('localizer', ['windows', 'dense'])
def test_rejections_of_several_kinds_and_a_failing_frame_never_end_inference(ros, localizer):
    """Item 1: a warning and an error from one log call site ended the inference thread."""
    encoder = ColourEncoder(poison='yellow')
    patches = encoder.encode_patches

    def encode_patches(pixels):  # dense fails on a yellow frame too
        encoder.encode_images(pixels)
        return patches(pixels)
    encoder.encode_patches = encode_patches
    node = start_colour_node(ros, encoder=encoder, localizer=localizer)
    attacker = Attacker(ros)
    yuv = Image(height=2, width=2, encoding='yuv422', step=4, data=bytes(8))
    attacker.send_handled(node, yuv, 'rejected')  # a warning of one kind
    attacker.send_handled(node, image_message(np.zeros((1, 100_000, 3), np.uint8)),
                          'rejected')  # of another kind
    yellow = image_message(colour_scene(squares=[('yellow', 0, 0, 160, 120)]))
    attacker.send_handled(node, yellow, 'failed')  # inference fails: an error, no warning
    attacker.send_handled(node, yuv, 'rejected')  # a warning again after the error
    for stamp in range(3):
        attacker.send(attacker.good_frame(stamp))
    assert node.worker.alive()
    assert [d.results[0].hypothesis.class_id for d in attacker.detections[-1].detections] == \
        ['red']


def test_an_exception_while_publishing_loses_that_frame_only(ros, monkeypatch, capfd):
    """Item 2: cv2 out of memory while drawing the debug image ended the thread."""
    node = start_colour_node(ros)
    attacker = Attacker(ros)
    viewer = []
    attacker.node.create_subscription(Image, '/clip_perception/debug_image', viewer.append,
                                      qos_profile_sensor_data)
    assert ros.spin_until(lambda: node.outputs.debug_pub.get_subscription_count() > 0)
    calls = []

    def failing_overlay(*args, **kwargs):
        calls.append(1)
        raise MemoryError('Insufficient memory (simulated)')
    monkeypatch.setattr(outputs_module.messages, 'debug_image', failing_overlay)
    attacker.send(attacker.good_frame(1))  # detections go out before the overlay fails
    assert ros.spin_until(lambda: node.counters['failed'] == 1, 5), node.counters
    monkeypatch.undo()
    attacker.send(attacker.good_frame(2))
    assert ros.spin_until(lambda: len(viewer) == 1, 5)
    assert node.counters['processed'] == 1 and calls == [1]
    assert 'publishing failed: MemoryError: Insufficient memory' in capfd.readouterr().err


def test_the_heatmap_overlay_needs_memory_for_the_frame_not_for_frame_times_labels():
    """Item 2: 300 labels on a 1920×1080 frame drew 300 full-size float maps (6 GB peak)."""
    import tracemalloc

    from clip_perception.ros.messages import heatmap_image
    from std_msgs.msg import Header
    labels = [f'label {i}' for i in range(100)]
    maps = np.random.default_rng(0).random((len(labels), 30, 53)).astype(np.float32)
    pixels = np.zeros((720, 1280, 3), np.uint8)
    tracemalloc.start()
    try:
        msg = heatmap_image(Header(), pixels, False, maps, labels)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (msg.width, msg.height) == (1280, 720)
    frame_bytes = pixels.size * 4  # the float32 canvas
    assert peak < 6 * frame_bytes, f'{peak / 2**20:.0f} MiB'  # 100 full maps: 33 canvases


def test_the_watchdog_reports_a_stalled_inference_thread(ros):
    """Beyond the items: frames waiting while nothing is processed is an ERROR at once."""
    encoder = ColourEncoder()
    node, stop = threaded_node(ros, encoder, watchdog_sec=1.0)
    try:
        attacker = Attacker(ros)
        attacker.send(attacker.good_frame(1))
        encoder.gate = threading.Event()  # inference hangs
        attacker.send(attacker.good_frame(2), answered=False)
        attacker.send(attacker.good_frame(3), answered=False)
        assert ros.spin_until(lambda: attacker.status() is not None and
                              attacker.status().level == DiagnosticStatus.ERROR, 10)
        assert 'inference is stalled' in attacker.status().message
        assert float(diagnostic_values(attacker.diagnostics[-1])['waiting_sec']) > 1.0
        encoder.gate.set()
        assert ros.spin_until(lambda: attacker.status().level == DiagnosticStatus.OK, 10)
    finally:
        if encoder.gate is not None:
            encoder.gate.set()
        stop()


# --- 3: tracking keeps what the detector sees ------------------------------------------
def found(msg) -> set:
    """Return the (label, score, box) of a Detection2DArray's detections, rounded."""
    return {(d.results[0].hypothesis.class_id, round(d.results[0].hypothesis.score, 3),
             round(d.bbox.center.position.x), round(d.bbox.center.position.y),
             round(d.bbox.size_x), round(d.bbox.size_y)) for d in msg.detections}


def test_tracking_publishes_every_detection_found_without_it(ros):
    """Item 3: tracking made the detector merge at track_low_score: 22 detections became 2."""
    _, _, untracked = replay_demo_bag(ros)
    ros.destroy_nodes()
    # min_hits 1: every new track is published at once, so what tracking publishes is
    # the detector's own (the bag's frames are unrelated scenes: at 2 a new tool waits)
    _, _, tracked = replay_demo_bag(ros, tracking=True, track_min_hits=1)
    assert sum(len(msg.detections) for msg in untracked) >= 15
    for without, with_tracking in zip(untracked, tracked, strict=True):
        assert found(without) <= found(with_tracking)  # plus continued uncertain ones
    assert all(d.id for msg in tracked for d in msg.detections)


# --- 4: depth matched when the frame arrives --------------------------------------------
def depth_image(stamp_sec, metres=0.8, shape=(120, 160)):
    msg = Image(height=shape[0], width=shape[1], encoding='32FC1', is_bigendian=0,
                step=shape[1] * 4)
    msg.data = np.full(shape, metres, np.float32).tobytes()
    msg.header.stamp.sec, msg.header.frame_id = stamp_sec, 'camera'
    return msg


def camera_info(stamp_sec, width=160, height=120):
    msg = CameraInfo(width=width, height=height)
    msg.k = [100.0, 0.0, width / 2, 0.0, 100.0, height / 2, 0.0, 0.0, 1.0]
    msg.header.stamp.sec = stamp_sec
    return msg


def test_depth_is_kept_with_its_frame_however_long_inference_takes(ros):
    """Item 4: depth was matched after inference, against a buffer that had moved on."""
    encoder = ColourEncoder()
    node = start_colour_node(ros, encoder=encoder, depth_topics=['depth'],
                             camera_info_topics=['camera_info'])
    attacker = Attacker(ros, depth=True)
    seen = []
    attacker.node.create_subscription(Image, 'depth', seen.append, RELIABLE)
    encoder.gate = threading.Event()  # inference holds the frame
    attacker.depth_pub.publish(depth_image(10))
    attacker.info_pub.publish(camera_info(10))
    assert ros.spin_until(lambda: len(seen) == 1, 5)
    attacker.send(image_message(colour_scene(squares=[RED]), 'camera', 10), answered=False)
    assert ros.spin_until(lambda: encoder.calls_started > 0, 5)
    for stamp in range(11, 31):  # depth at a high rate while the frame waits: 20 newer ones
        attacker.depth_pub.publish(depth_image(stamp))
        attacker.info_pub.publish(camera_info(stamp))
        ros.spin_until(lambda: False, 0.01)
    assert ros.spin_until(lambda: seen[-1].header.stamp.sec == 30, 10)
    encoder.gate.set()
    assert ros.spin_until(lambda: len(attacker.detections_3d) == 1, 10), node.counters
    (found,) = attacker.detections_3d[0].detections
    assert attacker.detections_3d[0].header.stamp.sec == 10
    assert found.bbox.center.position.z == pytest.approx(0.8)
    # a depth image that arrives after its colour frame still joins it
    encoder.gate = threading.Event()
    attacker.send(image_message(colour_scene(squares=[RED]), 'camera', 40), answered=False)
    assert ros.spin_until(lambda: encoder.calls_started > 1, 5)
    attacker.depth_pub.publish(depth_image(40, metres=0.6))
    attacker.info_pub.publish(camera_info(40))
    assert ros.spin_until(lambda: seen[-1].header.stamp.sec == 40, 5)
    encoder.gate.set()
    assert ros.spin_until(lambda: len(attacker.detections_3d) == 2, 10), node.counters
    assert attacker.detections_3d[1].detections[0].bbox.center.position.z == pytest.approx(0.6)
    assert node.counters['without_3d'] == 0


def test_camera_info_of_another_size_and_out_of_range_depth_give_no_3d(ros, capfd):
    """Item 12: a 640×480 camera info on a 160×120 image was used; 3e38 m became inf."""
    node = start_colour_node(ros, depth_topics=['depth'], camera_info_topics=['camera_info'])
    attacker = Attacker(ros, depth=True)
    attacker.depth_pub.publish(depth_image(1))
    attacker.info_pub.publish(camera_info(1, 640, 480))
    ros.spin_until(lambda: False, 0.3)
    attacker.send(image_message(colour_scene(squares=[RED]), 'camera', 1))
    attacker.depth_pub.publish(depth_image(2, metres=3e38))
    attacker.info_pub.publish(camera_info(2))
    ros.spin_until(lambda: False, 0.3)
    attacker.send(image_message(colour_scene(squares=[RED]), 'camera', 2))
    assert ros.spin_until(lambda: len(attacker.detections_3d) == 1, 5)
    assert attacker.detections_3d[0].detections == []  # no valid depth: left out, not inf
    assert node.counters['without_3d'] == 1
    logged = capfd.readouterr().err
    assert 'the camera info is for 640×480 images, the colour image is 160×120' in logged


# --- 5, 8: the memory ------------------------------------------------------------------
def test_stamps_in_the_future_or_zero_do_not_empty_the_memory(ros):
    """Item 5: frames stamped 5 years ahead evicted the rest; zero stamps kept one frame."""
    node = start_colour_node(ros, memory_period=0.0, memory_max_age=60.0)
    attacker = Attacker(ros)
    for stamp in range(1, 5):
        attacker.send(image_message(colour_scene(squares=[RED]), 'camera', 1_800_000_000 +
                                    stamp))
    for stamp in range(3):
        attacker.send(image_message(colour_scene(), 'camera', 1_960_000_000 + stamp))
    for _ in range(3):
        attacker.send(image_message(colour_scene(), 'camera', 0))
    assert len(node.memory) == 10


# --- 6: per-frame bounds of the heatmap localizers --------------------------------------
@pytest.mark.parametrize('localizer', ['dense', 'gradcam'])
def test_heatmap_localizers_reject_frames_that_need_too_many_patches(ros, localizer, capfd):
    """Item 6: an 8×4000 frame blocked inference for a minute; 1×2000 took 5.7 GB."""
    encoder = ColourEncoder()
    if localizer == 'gradcam':
        encoder.gradcam = lambda pixels, matrix, count: (_ for _ in ()).throw(
            AssertionError('no pass may run for a rejected frame'))
    node = start_colour_node(ros, encoder=encoder, localizer=localizer)
    attacker = Attacker(ros)
    for shape in ((8, 4000), (1, 2000), (1, 100_000)):
        attacker.send_handled(node, image_message(np.zeros((*shape, 3), np.uint8)), 'rejected')
    assert 'more than max_map_patches=2048' in capfd.readouterr().err
    if localizer == 'dense':
        attacker.send(attacker.good_frame())
    refused = node.set_parameters([Parameter('map_size', value=4096)])[0]
    assert not refused.successful and 'max_map_patches' in refused.reason


# --- 7, 10, 11: the services -------------------------------------------------------------
class Planner:

    def __init__(self, ros, clients=1):
        self.ros = ros
        self.node = ros.node('hostile_planner')
        self.detect_clients = [self.node.create_client(Detect, '/clip_perception/detect')
                               for _ in range(clients)]
        self.find_client = self.node.create_client(Find, '/clip_perception/find')
        for client in self.detect_clients + [self.find_client]:
            assert client.wait_for_service(timeout_sec=10)

    def call(self, client, request, timeout=30.0):
        future = client.call_async(request)
        assert self.ros.spin_until(future.done, timeout), 'no answer'
        return future.result()


def test_detect_refuses_too_many_labels_and_stops_work_nobody_waits_for(ros, monkeypatch):
    """Item 7: 10,000 labels ran for 73 s after the caller's 30 s, to 8 GB; later calls failed."""
    encoder = ColourEncoder()
    start_colour_node(ros, encoder=encoder)
    attacker = Attacker(ros)
    planner = Planner(ros)
    attacker.send(attacker.good_frame())
    answer = planner.call(planner.detect_clients[0], Detect.Request(
        labels=[f'thing {i}' for i in range(10_000)]))
    assert not answer.success and 'at most 100 labels per request' in answer.message
    monkeypatch.setattr(planner_services, 'QUERY_WAIT_SEC', 1.0)
    encoder.gate = threading.Event()  # the inference thread is busy with a frame
    attacker.send(attacker.good_frame(2), answered=False)
    assert ros.spin_until(lambda: encoder.calls_started > 1, 5)
    texts_before = len(encoder.text_calls)
    answer = planner.call(planner.detect_clients[0], Detect.Request(
        labels=[f'colour {i}' for i in range(50)]))
    assert not answer.success and 'no answer from the inference thread' in answer.message
    encoder.gate.set()
    assert ros.spin_until(lambda: len(attacker.detections) == 2, 5)
    ros.spin_until(lambda: False, 0.5)
    assert len(encoder.text_calls) == texts_before  # the abandoned request never ran
    monkeypatch.undo()
    answer = planner.call(planner.detect_clients[0], Detect.Request(labels=['red']))
    assert answer.success, answer.message


def test_a_burst_of_fifty_callers_is_answered_every_one(ros):
    """Item 10: 50 clients calling at once while frames stream: 31 requests vanished."""
    node, stop = threaded_node(ros)
    try:
        attacker = Attacker(ros)
        attacker.send(attacker.good_frame())
        planner = Planner(ros, clients=50)
        futures = [client.call_async(Detect.Request(labels=['red']))
                   for client in planner.detect_clients]
        stamp = [1]

        def stream():
            stamp[0] += 1
            attacker.image_pub.publish(attacker.good_frame(stamp[0]))
        timer = attacker.node.create_timer(0.05, stream)
        assert ros.spin_until(lambda: all(f.done() for f in futures), 60), \
            f'{sum(f.done() for f in futures)} of 50 answered'
        timer.cancel()
        answers = [f.result() for f in futures]
        assert all(a.success for a in answers), [a.message for a in answers if not a.success]
    finally:
        stop()


def test_a_find_queued_behind_a_detect_fails_at_once_on_deactivation(ros):
    """Item 11: the find waited its full 30 s."""
    encoder = ColourEncoder()
    node = start_colour_node(ros, encoder=encoder, memory_period=0.0, max_batch=1)
    attacker = Attacker(ros)
    planner = Planner(ros)
    attacker.send(attacker.good_frame())
    encoder.delay_sec = 0.2  # every crop a fifth of a second: a frame takes seconds
    attacker.send(attacker.good_frame(2), answered=False)
    assert ros.spin_until(lambda: encoder.calls_started > 3, 5)
    # both wait behind the frame; the inference thread then takes them together
    detect = planner.detect_clients[0].call_async(Detect.Request(labels=['green']))
    find = planner.find_client.call_async(Find.Request(query='red', top_k=1))
    assert ros.spin_until(lambda: len(node.worker.queries) == 2, 5)
    assert ros.spin_until(lambda: not node.worker.queries, 30)  # taken: the detect runs
    started = time.monotonic()
    node.trigger_deactivate()  # cancels the detect at its next crop
    assert ros.spin_until(lambda: detect.done() and find.done(), 10)
    assert time.monotonic() - started < 10  # not QUERY_WAIT_SEC
    assert not detect.result().success and not find.result().success
    assert 'stopping' in find.result().message, find.result().message


def test_bad_requests_and_parameters_are_one_clear_line(ros, capfd):
    """Item 12: a camera name ROS refuses, depth_topics of the wrong type, a parameter storm."""
    node = start_colour_node(ros)
    attacker = Attacker(ros)
    planner = Planner(ros)
    attacker.send(attacker.good_frame())
    answer = planner.call(planner.detect_clients[0], Detect.Request(labels=['red'],
                                                                    camera='//bad name!!'))
    assert not answer.success
    assert "camera '//bad name!!' is not a valid topic name" in answer.message
    for value in range(30):  # a storm of parameter changes: logged once per interval
        node.set_parameters([Parameter('score_threshold', value=0.5 + value / 100)])
    assert capfd.readouterr().err.count('updated: score_threshold') == 1


@pytest.mark.parametrize('overrides,message', [
    ({'depth_topics': 5, 'camera_info_topics': ['info']},
     'depth_topics must be a list of topic names (one per image topic), got 5'),
    ({'depth_topics': 'depth', 'camera_info_topics': 'info',
      'image_topics': ['a', 'b', 'c', 'd', 'e']},
     "depth_topics must be a list of topic names (one per image topic), got 'depth'"),
])
def test_depth_topics_of_the_wrong_type_name_the_parameter(ros, capfd, overrides, message):
    node = ClipPerceptionNode(encoder=ColourEncoder(), context=ros.context, parameter_overrides=[
        Parameter(k, value=v) for k, v in overrides.items()])
    ros.add_node(node)
    assert not node.start()
    err = capfd.readouterr().err
    assert message in err and 'Traceback' not in err


# --- 9: the tracker stays bounded ------------------------------------------------------
def test_the_tracker_keeps_at_most_max_tracks():
    """Item 9: 1,000 moving detections a frame made 21,961 tracks in 35 frames."""
    from clip_perception.engine.boxes import Detection
    from clip_perception.engine.tracking import Tracker, TrackerSettings
    tracker = Tracker(TrackerSettings(max_missed=10_000, max_tracks=1000))
    rng = np.random.default_rng(0)
    for _ in range(35):
        xy = rng.uniform(0, 4000, (1000, 2))  # every frame elsewhere: nothing matches
        tracker.update([Detection(f'label {i % 50}', 0.9, (x, y, x + 10, y + 10))
                        for i, (x, y) in enumerate(xy)])
        assert len(tracker.tracks) <= 1000
    assert all(track.missed == 0 for track in tracker.tracks)  # the newest are kept


# --- publishers that can publish -------------------------------------------------------
@pytest.mark.parametrize('localizer,depth,expected', [
    ('windows', False, set()),
    ('dense', False, {'/clip_perception/heatmap'}),
    ('windows', True, {'/detections_3d'}),
])
def test_publishers_exist_only_where_they_can_publish(ros, localizer, depth, expected):
    """A heatmap only with a heatmap localizer, 3D only with depth topics."""
    overrides = {'depth_topics': ['depth'], 'camera_info_topics': ['info']} if depth else {}
    node = start_colour_node(ros, localizer=localizer, **overrides)
    optional = {'/clip_perception/heatmap', '/detections_3d'}
    published = {name for name, _ in node.get_publisher_names_and_types_by_node(
        'clip_perception', '/')}
    assert published & optional == expected
