"""The node in-process over real DDS, with the deterministic colour encoder."""
import threading

from clip_perception.engine.boxes import pairwise_iou
from clip_perception.ros import messages
from clip_perception.ros.messages import box_corners
from clip_perception.ros.node import ClipPerceptionNode
from colour_encoder import colour_scene, ColourEncoder
import cv2
from diagnostic_msgs.msg import DiagnosticArray
from node_helpers import diagnostic_values, image_message, RELIABLE, start_colour_node
import numpy as np
import pytest
from rcl_interfaces.msg import ParameterDescriptor
from rclpy.lifecycle import TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import SetBool
from vision_msgs.msg import Classification, Detection2DArray, LabelInfo

# Nodes over DDS, processes: the slow tier (make test runs it, make test-fast does not).
pytestmark = pytest.mark.slow

LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
SQUARE = (40, 30, 100, 90)


class Probe:
    """A test node publishing images and collecting every output of the node."""

    def __init__(self, ros, image_topics=('image',), node_name='clip_perception'):
        self.ros = ros
        self.node = ros.node('probe')
        self.image_pubs = {t: self.node.create_publisher(Image, t, RELIABLE)
                           for t in image_topics}
        self.detections, self.classifications, self.label_infos = [], [], []
        self.diagnostics = []
        self.node.create_subscription(Detection2DArray, 'detections',
                                      self.detections.append, RELIABLE)
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self.diagnostics.append,
                                      RELIABLE)
        self.node.create_subscription(Classification, 'classification',
                                      self.classifications.append, RELIABLE)
        self.node.create_subscription(LabelInfo, 'label_info', self.label_infos.append, LATCHED)

    def wait_matched(self):
        for pub in self.image_pubs.values():
            assert self.ros.wait_for_subscribers(pub), 'node never subscribed'

    def send(self, msg, topic='image'):
        self.image_pubs[topic].publish(msg)

    def wait_for(self, outputs, count, timeout=15.0):
        assert self.ros.spin_until(lambda: len(outputs) >= count, timeout), \
            f'{len(outputs)} of {count} messages arrived'

    def frame_counts(self) -> dict[str, int]:
        """Return the frames_* counters of the node's latest /diagnostics ({} before any)."""
        if not self.diagnostics:
            return {}
        values = diagnostic_values(self.diagnostics[-1])
        return {key.removeprefix('frames_'): int(value) for key, value in values.items()
                if key.startswith('frames_')}

    def wait_for_counts(self, timeout=10.0, **expected):
        """Until /diagnostics reports the `expected` frame counts (received=3, ...)."""
        assert self.ros.spin_until(
            lambda: {k: self.frame_counts().get(k) for k in expected} == expected, timeout), \
            f'diagnostics report {self.frame_counts()}, expected {expected}'


@pytest.fixture
def probe(ros):
    return Probe(ros)


def test_detections_classification_and_label_info(ros, probe):
    node = start_colour_node(ros)
    probe.wait_matched()
    msg = image_message(colour_scene(squares=[('red', *SQUARE)]), 'bench_camera', 42)
    msg.header.stamp.nanosec = 5
    probe.send(msg)
    probe.wait_for(probe.detections, 1)
    probe.wait_for(probe.classifications, 1)
    out = probe.detections[0]
    assert out.header == msg.header
    assert len(out.detections) == 1
    found = out.detections[0]
    assert found.header == msg.header
    assert found.results[0].hypothesis.class_id == 'red'
    assert 0.6 <= found.results[0].hypothesis.score <= 1.0
    assert found.bbox.center.theta == 0.0
    assert pairwise_iou(np.array([box_corners(found)]), np.array([SQUARE], float))[0, 0] >= 0.5
    classes = probe.classifications[0]
    assert classes.header == msg.header
    assert [r.class_id for r in classes.results][0] == 'red'
    assert sorted(r.class_id for r in classes.results) == ['blue', 'green', 'red']
    scores = [r.score for r in classes.results]
    assert scores == sorted(scores, reverse=True) and sum(scores) == pytest.approx(1, abs=1e-4)
    probe.wait_for(probe.label_infos, 1)
    info = probe.label_infos[-1]
    assert [(c.class_id, c.class_name) for c in info.class_map] == \
        [(0, 'red'), (1, 'green'), (2, 'blue')]
    assert info.threshold == pytest.approx(0.6)
    assert node.counters['processed'] == 1


@pytest.mark.parametrize('encoding', ['rgb8', 'bgr8', 'rgba8', 'bgra8'])
def test_colour_encodings_and_row_padding(ros, probe, encoding):
    start_colour_node(ros)
    probe.wait_matched()
    rgb = colour_scene(squares=[('blue', *SQUARE)])
    pixels = rgb[:, :, ::-1] if encoding.startswith('bgr') else rgb
    if encoding.endswith('a8'):
        pixels = np.concatenate([pixels, np.full(pixels.shape[:2] + (1,), 255, np.uint8)], 2)
    probe.send(image_message(np.ascontiguousarray(pixels), encoding=encoding, padding=5))
    probe.wait_for(probe.detections, 1)
    assert [d.results[0].hypothesis.class_id for d in probe.detections[0].detections] == ['blue']


def test_mono8_is_processed(ros, probe):
    node = start_colour_node(ros)
    probe.wait_matched()
    probe.send(image_message(np.full((60, 80), 128, np.uint8), encoding='mono8'))
    probe.wait_for(probe.detections, 1)
    assert probe.detections[0].detections == []  # grey: background
    assert node.counters['rejected'] == 0


BAD_IMAGES = {
    'mono16': lambda: image_message(np.zeros((8, 8, 2), np.uint8), encoding='mono16'),
    '32FC1': lambda: image_message(np.zeros((8, 8, 4), np.uint8), encoding='32FC1'),
    'yuv422': lambda: image_message(np.zeros((8, 8, 2), np.uint8), encoding='yuv422'),
    'truncated': lambda: _truncated(image_message(colour_scene())),
    'empty 0x0': lambda: Image(height=0, width=0, encoding='rgb8', step=0),
    'long encoding': lambda: image_message(np.zeros((8, 8, 3), np.uint8), encoding='x' * 100000),
}


def _truncated(msg):
    msg.data = bytes(msg.data)[:len(msg.data) // 2]
    return msg


@pytest.mark.parametrize('case', sorted(BAD_IMAGES))
def test_bad_images_are_rejected_with_a_reason_and_the_next_frame_works(
        ros, probe, capfd, case):
    node = start_colour_node(ros)
    probe.wait_matched()
    probe.send(BAD_IMAGES[case]())
    assert ros.spin_until(lambda: node.counters['rejected'] == 1), 'bad image not rejected'
    probe.send(image_message(colour_scene(squares=[('red', *SQUARE)]), 'good'))
    probe.wait_for(probe.detections, 1)
    assert probe.detections[0].header.frame_id == 'good'
    assert len(probe.detections) == 1  # nothing was published for the bad frame
    expected = {'mono16': "unsupported encoding 'mono16'", '32FC1': 'unsupported encoding',
                'yuv422': 'unsupported encoding', 'truncated': 'data has 28800 bytes',
                'empty 0x0': 'empty image', 'long encoding': '… (100000 chars)'}[case]
    log = capfd.readouterr().err
    assert 'image rejected' in log and expected in log, log


def test_a_very_large_image_is_downscaled_and_boxes_stay_in_input_pixels(ros, probe, capfd):
    start_colour_node(ros, max_image_pixels=1_000_000)
    probe.wait_matched()
    square = (2000, 1500, 4000, 3500)  # in an 8000×6000 mono-sized frame
    frame = colour_scene(6000, 8000, [('green', *square)])
    probe.send(image_message(frame, 'huge'))
    probe.wait_for(probe.detections, 1, timeout=60)
    found = probe.detections[0].detections
    assert [d.results[0].hypothesis.class_id for d in found] == ['green']
    assert pairwise_iou(np.array([box_corners(found[0])]), np.array([square], float))[0, 0] >= 0.5
    assert 'downscaled' in capfd.readouterr().err


def test_corrupt_compressed_image_is_rejected_and_the_next_one_decoded(ros, capfd):
    node = start_colour_node(ros, image_transport='compressed')
    assert node.input_topics == ['/image/compressed']
    probe_node = ros.node('compressed_probe')
    pub = probe_node.create_publisher(CompressedImage, 'image/compressed', RELIABLE)
    detections = []
    probe_node.create_subscription(Detection2DArray, 'detections', detections.append, RELIABLE)
    assert ros.wait_for_subscribers(pub)
    corrupt = CompressedImage(format='jpeg', data=b'\xff\xd8 not really a jpeg')
    pub.publish(corrupt)
    assert ros.spin_until(lambda: node.counters['rejected'] == 1)
    ok, jpeg = cv2.imencode('.png', colour_scene(squares=[('red', *SQUARE)])[:, :, ::-1])
    good = CompressedImage(format='png', data=jpeg.tobytes())
    good.header.frame_id = 'compressed_camera'
    pub.publish(good)
    assert ros.spin_until(lambda: len(detections) == 1)
    assert detections[0].header.frame_id == 'compressed_camera'
    assert [d.results[0].hypothesis.class_id for d in detections[0].detections] == ['red']
    assert 'could not decode compressed image' in capfd.readouterr().err


def test_several_cameras_are_batched_and_keep_their_headers(ros):
    encoder = ColourEncoder()
    start_colour_node(ros, encoder, image_topics=['left/image', 'right/image'], max_batch=4096)
    probe = Probe(ros, image_topics=('left/image', 'right/image'))
    probe.wait_matched()
    encoder.gate = threading.Event()  # hold inference so both frames are parked together
    probe.send(image_message(colour_scene(), 'warmup'), 'left/image')
    assert ros.spin_until(lambda: encoder.calls_started == 1)  # the warm-up is being inferred
    probe.send(image_message(colour_scene(squares=[('red', *SQUARE)]), 'left'), 'left/image')
    probe.send(image_message(colour_scene(squares=[('blue', *SQUARE)]), 'right'), 'right/image')
    probe.wait_for_counts(received=3, processed=0, dropped=0)
    encoder.gate.set()
    probe.wait_for(probe.detections, 3)
    by_frame = {d.header.frame_id: d for d in probe.detections}
    assert by_frame['left'].detections[0].results[0].hypothesis.class_id == 'red'
    assert by_frame['right'].detections[0].results[0].hypothesis.class_id == 'blue'
    crops_one_frame = encoder.image_batches[0]
    assert encoder.image_batches[1] == 2 * crops_one_frame  # one pass for both cameras


def test_frames_arriving_during_inference_replace_each_other(ros, probe):
    encoder = ColourEncoder()
    start_colour_node(ros, encoder)
    probe.wait_matched()
    encoder.gate = threading.Event()
    probe.send(image_message(colour_scene(), 'f0', 0))
    assert ros.spin_until(lambda: encoder.calls_started == 1)  # f0 is being inferred
    for seq in range(1, 6):  # at a camera's pace: a burst would collapse in DDS's depth-1 queue
        probe.send(image_message(colour_scene(), f'f{seq}', seq))
        ros.spin_until(lambda: False, 1 / 30)
    # one parked frame per camera: each newer frame replaced the one before (dropped)
    probe.wait_for_counts(received=6, dropped=4, processed=0)
    encoder.gate.set()
    probe.wait_for_counts(received=6, dropped=4, processed=2)
    assert ros.spin_until(lambda: len(probe.detections) == 2)
    assert [d.header.frame_id for d in probe.detections] == ['f0', 'f5']


def test_keep_latest_under_a_30_hz_flood(ros, probe):
    encoder = ColourEncoder(delay_sec=0.25)  # inference 4× slower than the camera
    start_colour_node(ros, encoder)
    probe.wait_matched()
    sent = 60
    for seq in range(sent):
        probe.send(image_message(colour_scene(squares=[('red', *SQUARE)]), f'f{seq}', seq))
        ros.spin_until(lambda: False, 1 / 30)
    # every frame is accounted for, served or replaced by a newer one: nothing queues up
    assert ros.spin_until(lambda: probe.frame_counts().get('received') == sent and
                          probe.frame_counts()['processed'] + probe.frame_counts()['dropped']
                          == sent, 15), probe.frame_counts()
    counts = probe.frame_counts()
    assert counts['dropped'] > sent // 2
    assert ros.spin_until(lambda: len(probe.detections) == counts['processed'])
    served = [int(d.header.frame_id[1:]) for d in probe.detections]
    assert served == sorted(served)  # never an older frame after a newer one
    assert served[-1] == sent - 1  # the newest is served


def test_debug_image_is_drawn_only_while_subscribed(ros, probe, monkeypatch):
    drawn = []
    original = messages.debug_image
    monkeypatch.setattr(messages, 'debug_image',
                        lambda *a: drawn.append(1) or original(*a))
    start_colour_node(ros)
    probe.wait_matched()
    probe.send(image_message(colour_scene(squares=[('red', *SQUARE)]), 'first'))
    probe.wait_for(probe.detections, 1)
    assert drawn == []
    debug = []
    sub = probe.node.create_subscription(Image, '/clip_perception/debug_image', debug.append,
                                         QoSProfile(depth=1,
                                                    reliability=ReliabilityPolicy.BEST_EFFORT))
    assert ros.wait_for_publishers(sub)
    source = image_message(colour_scene(squares=[('red', *SQUARE)]), 'second')
    probe.send(source)
    probe.wait_for(debug, 1)
    assert drawn == [1]
    image = debug[0]
    assert image.header == source.header and image.encoding == 'rgb8'
    assert (image.width, image.height) == (source.width, source.height)
    assert bytes(image.data) != bytes(source.data)  # a box was drawn


def test_diagnostics_report_rates_drops_latency_device_and_model(ros, probe):
    start_colour_node(ros)
    diagnostics = []
    probe.node.create_subscription(DiagnosticArray, '/diagnostics', diagnostics.append, 10)
    probe.wait_matched()
    probe.send(image_message(colour_scene(), 'one'))
    probe.wait_for(probe.detections, 1)
    assert ros.spin_until(lambda: diagnostics and diagnostic_values(diagnostics[-1])[
        'frames_processed'] == '1', 5)
    status = diagnostics[-1].status[0]
    values = diagnostic_values(diagnostics[-1])
    assert status.name == 'clip_perception: inference' and status.hardware_id == 'cpu'
    for key in ('input_rate_hz', 'processed_rate_hz', 'frames_dropped', 'frames_rejected',
                'latency_p50_ms', 'latency_p95_ms', 'device', 'model'):
        assert key in values
    assert float(values['latency_p95_ms']) >= float(values['latency_p50_ms']) > 0
    assert values['device'] == 'cpu'


def test_runtime_parameter_changes_and_rejections(ros, probe):
    encoder = ColourEncoder()
    node = start_colour_node(ros, encoder)
    probe.wait_matched()
    probe.wait_for(probe.label_infos, 1)
    text_calls = len(encoder.text_calls)
    result = node.set_parameters([Parameter('labels', value=['red', 'yellow'])])[0]
    assert result.successful
    probe.wait_for(probe.label_infos, 2)
    assert [c.class_name for c in probe.label_infos[-1].class_map] == ['red', 'yellow']
    # several prompt changes in a row (`ros2 param load`): encoded once, at the next frame
    for name, value in [('prompt_templates', ['a {} thing']),
                        ('background_prompts', ['a grey background', 'grey'])]:
        assert node.set_parameters([Parameter(name, value=value)])[0].successful
    assert len(encoder.text_calls) == text_calls
    probe.send(image_message(colour_scene(squares=[('red', *SQUARE)]), 'after'))
    probe.wait_for(probe.detections, 1)
    assert len(encoder.text_calls) == text_calls + 1
    assert encoder.text_calls[-1] == ['a red thing', 'a yellow thing', 'a grey background',
                                      'grey']
    for change, reason in [(['red', 'red'], 'duplicate labels'), (['red', ' '], 'blank')]:
        rejected = node.set_parameters([Parameter('labels', value=change)])[0]
        assert not rejected.successful and reason in rejected.reason
    assert node.get_parameter('labels').value == ['red', 'yellow']
    out_of_range = node.set_parameters([Parameter('score_threshold', value=1.5)])[0]
    assert not out_of_range.successful
    assert node.set_parameters([Parameter('box_refinement', value='boxes')])[0].reason.startswith(
        'box_refinement must be one of')
    read_only = node.set_parameters([Parameter('model', value='other')])[0]
    assert not read_only.successful
    assert len(encoder.text_calls) == text_calls + 1
    descriptor: ParameterDescriptor = node.describe_parameter('score_threshold')
    assert descriptor.floating_point_range[0].to_value == 1.0
    assert node.describe_parameter('model').read_only


def test_enable_service_pauses_inference_and_keeps_subscriptions(ros, probe):
    node = start_colour_node(ros)
    probe.wait_matched()
    client = probe.node.create_client(SetBool, '/clip_perception/enable')
    assert client.wait_for_service(timeout_sec=5)
    future = client.call_async(SetBool.Request(data=False))
    assert ros.spin_until(future.done)
    assert future.result().success and not node.get_parameter('enabled').value
    probe.send(image_message(colour_scene(), 'paused'))
    assert ros.spin_until(lambda: node.counters['paused'] == 1)
    assert probe.image_pubs['image'].get_subscription_count() == 1
    future = client.call_async(SetBool.Request(data=True))
    assert ros.spin_until(future.done) and future.result().success
    probe.send(image_message(colour_scene(), 'resumed'))
    probe.wait_for(probe.detections, 1)
    assert probe.detections[0].header.frame_id == 'resumed'


@pytest.mark.parametrize('name,value,reason', [
    ('window_scales', [float('nan')], 'window scales must be positive finite numbers, got [nan]'),
    ('window_scales', [float('inf')], 'window scales must be positive finite numbers'),
    ('window_scales', [0.0], 'window scales must be positive finite numbers, got [0.0]'),
    ('window_aspect_ratios', [1e-9], 'window aspect ratios must lie in [0.01, 100.0]'),
    ('window_scales', [1e-9], 'more than max_windows=2048'),
    ('max_windows', 10, 'more than max_windows=10'),
])
def test_window_settings_that_cannot_work_are_refused_with_a_reason(ros, name, value, reason):
    node = start_colour_node(ros)
    result = node.set_parameters([Parameter(name, value=value)])[0]
    assert not result.successful and reason in result.reason, result.reason
    assert 'array(' not in result.reason


def test_a_frame_that_needs_too_many_windows_is_rejected_and_the_next_works(ros, probe, capfd):
    start_colour_node(ros)
    probe.wait_matched()
    probe.send(image_message(np.full((2, 10000), 128, np.uint8), 'thin', encoding='mono8'))
    probe.wait_for_counts(received=1, rejected=1, processed=0)
    probe.send(image_message(colour_scene(squares=[('red', *SQUARE)]), 'good'))
    probe.wait_for(probe.detections, 1)
    assert [d.header.frame_id for d in probe.detections] == ['good']
    assert 'a 10000×2 frame would need' in capfd.readouterr().err


def test_a_compressed_image_too_large_to_decode_is_refused_from_its_header(ros, capfd):
    node = start_colour_node(ros, image_transport='compressed', max_image_pixels=1_000_000)
    probe_node = ros.node('bomb_probe')
    pub = probe_node.create_publisher(CompressedImage, 'image/compressed', RELIABLE)
    detections = []
    probe_node.create_subscription(Detection2DArray, 'detections', detections.append, RELIABLE)
    assert ros.wait_for_subscribers(pub)
    ok, png = cv2.imencode('.png', np.zeros((2000, 2000), np.uint8))  # 4 MP in 8 kB
    pub.publish(CompressedImage(format='png', data=png.tobytes()))
    assert ros.spin_until(lambda: node.counters['rejected'] == 1)
    assert 'PNG image of 2000×2000 exceeds max_image_pixels=1000000' in capfd.readouterr().err
    large = cv2.resize(colour_scene(squares=[('red', *SQUARE)]), (1920, 1440),
                       interpolation=cv2.INTER_NEAREST)
    ok, jpeg = cv2.imencode('.jpg', large[:, :, ::-1])  # OpenCV encodes BGR
    pub.publish(CompressedImage(format='jpeg', data=jpeg.tobytes()))  # 2.8 MP: read at 1/2
    assert ros.spin_until(lambda: len(detections) == 1)
    found = detections[0].detections
    assert [d.results[0].hypothesis.class_id for d in found] == ['red']
    square = [v * 12 for v in SQUARE]  # boxes in the pixels of the image as sent
    assert pairwise_iou(np.array([box_corners(found[0])]), np.array([square], float))[0, 0] >= 0.5


def test_one_cameras_failing_frame_does_not_cost_the_other_camera_its_answer(ros):
    encoder = ColourEncoder(poison='yellow')
    start_colour_node(ros, encoder, image_topics=['left/image', 'right/image'])
    probe = Probe(ros, image_topics=('left/image', 'right/image'))
    probe.wait_matched()
    encoder.gate = threading.Event()  # park both frames, then infer them as one batch
    probe.send(image_message(colour_scene(), 'warmup'), 'left/image')
    assert ros.spin_until(lambda: encoder.calls_started == 1)
    probe.send(image_message(colour_scene(squares=[('red', *SQUARE)]), 'left'), 'left/image')
    yellow = colour_scene()
    yellow[:] = (230, 220, 40)
    probe.send(image_message(yellow, 'right'), 'right/image')
    probe.wait_for_counts(received=3, processed=0)
    encoder.gate.set()
    probe.wait_for_counts(received=3, processed=2, failed=1)
    assert sorted(d.header.frame_id for d in probe.detections) == ['left', 'warmup']


def test_a_parameter_change_does_not_wait_for_the_frame_in_progress(ros, probe):
    encoder = ColourEncoder()
    node = start_colour_node(ros, encoder)
    probe.wait_matched()
    encoder.gate = threading.Event()
    probe.send(image_message(colour_scene(), 'held'))
    assert ros.spin_until(lambda: encoder.calls_started == 1)  # inference is held
    assert node.set_parameters([Parameter('score_threshold', value=0.7)])[0].successful
    assert node.set_parameters([Parameter('labels', value=['red', 'blue'])])[0].successful
    probe.wait_for(probe.label_infos, 2)  # announced at once, before the frame ends
    assert [c.class_name for c in probe.label_infos[-1].class_map] == ['red', 'blue']
    assert not probe.detections
    encoder.gate.set()
    probe.wait_for(probe.detections, 1)


def test_an_unexpected_error_while_activating_is_one_cannot_start_line(ros, capfd):
    node = ClipPerceptionNode(encoder=object(), context=ros.context)  # no encoder at all
    ros.add_node(node)
    assert not node.start()
    lines = [line for line in capfd.readouterr().err.splitlines() if 'cannot start' in line]
    assert len(lines) == 1 and 'AttributeError' in lines[0], lines


def test_damaged_jpeg_data_prints_no_decoder_warnings(ros, capfd):
    node = start_colour_node(ros, image_transport='compressed')
    probe_node = ros.node('damaged_jpeg_probe')
    pub = probe_node.create_publisher(CompressedImage, 'image/compressed', RELIABLE)
    assert ros.wait_for_subscribers(pub)
    ok, jpeg = cv2.imencode('.jpg', np.random.default_rng(0).integers(
        0, 255, (240, 320, 3), dtype=np.uint8))
    damaged = bytearray(jpeg.tobytes())
    damaged[len(damaged) // 2:len(damaged) // 2 + 100] = bytes(100)
    for sent in range(1, 4):
        pub.publish(CompressedImage(format='jpeg', data=bytes(damaged)))
        assert ros.spin_until(
            lambda: node.counters['processed'] + node.counters['rejected'] == sent)
    assert 'Corrupt JPEG' not in capfd.readouterr().err  # libjpeg's per-frame stderr line


def test_rejections_are_throttled_per_kind_and_topic_not_all_at_once(ros, probe, capfd):
    node = start_colour_node(ros)
    probe.wait_matched()
    for sent, msg in enumerate([BAD_IMAGES['mono16'](), BAD_IMAGES['yuv422'](),
                                BAD_IMAGES['truncated']()], 1):
        probe.send(msg)
        assert ros.spin_until(lambda: node.counters['rejected'] == sent)
    log = capfd.readouterr().err
    # two unsupported encodings: one line within 5 s; a truncated image: a line of its own
    assert log.count('unsupported encoding') == 1 and 'data has 28800 bytes' in log, log


def test_a_frame_left_running_at_deactivation_is_never_published_after_reactivation(ros, probe):
    encoder = ColourEncoder()
    node = start_colour_node(ros, encoder)
    probe.wait_matched()
    encoder.gate = threading.Event()
    probe.send(image_message(colour_scene(squares=[('red', *SQUARE)]), 'held'))
    assert ros.spin_until(lambda: encoder.calls_started == 1)  # inference is held
    assert node.trigger_deactivate() == TransitionCallbackReturn.SUCCESS  # leaves the frame
    assert node.trigger_activate() == TransitionCallbackReturn.SUCCESS
    probe.wait_matched()
    encoder.gate.set()  # the left frame finishes now, in its old thread
    probe.send(image_message(colour_scene(squares=[('blue', *SQUARE)]), 'fresh'))
    probe.wait_for(probe.detections, 1)
    ros.spin_until(lambda: len(probe.detections) > 1, 1.0)  # the old one would be right behind
    assert [d.header.frame_id for d in probe.detections] == ['fresh']


def test_tracking_gives_stable_ids_new_ids_and_retires_them(ros, probe):
    node = start_colour_node(ros, tracking=True, track_max_missed=1, score_threshold=0.6)
    probe.wait_matched()

    def frame(stamp, squares):
        probe.send(image_message(colour_scene(squares=squares), 'bench', stamp))
        probe.wait_for(probe.detections, stamp)
        return {d.results[0].hypothesis.class_id: d.id for d in probe.detections[-1].detections}

    first = frame(1, [('red', 10, 30, 50, 70)])
    assert first['red']
    for step in range(2, 6):  # the red square moves 8 px a frame: one track
        ids = frame(step, [('red', 2 + 8 * step, 30, 42 + 8 * step, 70),
                           *([('blue', 110, 60, 150, 100)] if step >= 4 else [])])
        assert ids['red'] == first['red']
    assert ids['blue'] not in ('', first['red'])
    frame(6, [])  # gone for two frames: more than track_max_missed
    frame(7, [])
    # back: a new track, published once seen in track_min_hits (2) frames in a row
    assert frame(8, [('red', 42, 30, 82, 70)]) == {}
    back = frame(9, [('red', 42, 30, 82, 70)])
    assert back['red'] not in (first['red'], ids['blue'])
    assert node.set_parameters([Parameter('tracking', value=False)])[0].successful
    assert frame(10, [('red', 42, 30, 82, 70)]) == {'red': ''}  # off: ids empty again
