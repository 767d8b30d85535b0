"""
The planner services over DDS: ~/detect and ~/find, while frames flow.

The node spins in an executor of its own in a thread, as `main` runs it; a
probe node in the test's executor publishes frames and calls the services. One
test puts the node in the test's executor beside the probe: the services'
coroutines wait there without holding the executor, so the probe's own calls
are answered.
"""
import threading

from clip_perception.ros.messages import box_corners
from clip_perception.ros.rosbag_io import BagFrame, read_messages, write_image_bag
from clip_perception_interfaces.srv import Detect, Find
from colour_encoder import colour_scene, ColourEncoder
from node_helpers import image_message, Probe, start_colour_node, threaded_node
import pytest
from sensor_msgs.msg import Image

pytestmark = pytest.mark.slow

GREEN = ('green', 40, 30, 100, 90)


@pytest.fixture
def node(ros):
    """Start the node, streaming the label red only, in an executor of its own."""
    node, stop = threaded_node(ros, labels=['red'], memory_period=0.0)
    yield node
    stop()


class Planner(Probe):
    """A probe: publishes frames, collects detections, calls the services."""

    def __init__(self, ros):
        super().__init__(ros, 'planner')
        self.detect_client = self.node.create_client(Detect, '/clip_perception/detect')
        self.find_client = self.node.create_client(Find, '/clip_perception/find')
        assert self.detect_client.wait_for_service(timeout_sec=10)
        assert self.find_client.wait_for_service(timeout_sec=10)
        assert ros.wait_for_subscribers(self.image_pub)

    def call(self, client, request, timeout=30.0):
        future = client.call_async(request)
        assert self.ros.spin_until(future.done, timeout), 'no answer'
        return future.result()

    def detect(self, labels, **fields):
        return self.call(self.detect_client, Detect.Request(labels=labels, **fields))

    def find(self, query, top_k=3, **fields):
        return self.call(self.find_client, Find.Request(query=query, top_k=top_k, **fields))


def test_detect_answers_for_labels_not_streamed_while_frames_flow(ros, node):
    planner = Planner(ros)
    answer = planner.detect(['green'])
    assert not answer.success and 'no frame has arrived yet' in answer.message
    stamp = [0]

    def publish():
        stamp[0] += 1
        planner.image_pub.publish(image_message(colour_scene(squares=[GREEN]), 'bench',
                                                stamp[0]))
    planner.node.create_timer(0.05, publish)
    planner.ros.spin_until(lambda: len(planner.detections) >= 3, 10)
    streamed_before = len(planner.detections)
    answers = [planner.detect(['green', 'blue'], score_threshold=0.5) for _ in range(3)]
    for answer in answers:
        assert answer.success, answer.message
        (found,) = answer.detections.detections
        assert found.results[0].hypothesis.class_id == 'green'
        x0, y0, x1, y1 = box_corners(found)
        assert abs(x0 - 40) < 12 and abs(x1 - 100) < 12 and abs(y0 - 30) < 12
        assert answer.detections.header.frame_id == 'bench'
        assert answer.classification.results[0].class_id == 'green'
    assert ros.spin_until(lambda: len(planner.detections) >= streamed_before + 3, 10), \
        'streaming stopped while the service was used'
    assert all(d.results[0].hypothesis.class_id == 'red'
               for msg in planner.detections for d in msg.detections)  # labels unchanged
    assert list(node.detector.settings.labels) == ['red']
    # an image in the request instead of the latest frame
    image = image_message(colour_scene(squares=[('blue', 80, 50, 140, 110)]), 'request', 7)
    answer = planner.detect(['blue'], image=image)
    assert answer.success and answer.detections.header.frame_id == 'request'
    assert [d.results[0].hypothesis.class_id for d in answer.detections.detections] == ['blue']


@pytest.mark.parametrize('fields,message', [
    ({'labels': []}, 'labels must not be empty'),
    ({'labels': ['green', 'Green']}, 'duplicate labels'),
    ({'labels': ['green'], 'score_threshold': 1.5}, 'score_threshold must lie in'),
    ({'labels': ['green'], 'score_threshold': float('nan')}, 'score_threshold must lie in'),
    ({'labels': ['green'], 'camera': 'elsewhere'}, "camera 'elsewhere' is not one of"),
    ({'labels': ['green'], 'image': Image(height=2, width=2, encoding='rgb8', step=6,
                                          data=b'\x00' * 5)}, 'rgb8'),
])
def test_bad_detect_requests_get_a_clear_message(ros, node, fields, message):
    planner = Planner(ros)
    planner.image_pub.publish(image_message(colour_scene(squares=[GREEN]), 'bench', 1))
    assert ros.spin_until(lambda: len(planner.detections) == 1, 10)
    answer = planner.detect(**fields)
    assert not answer.success and message in answer.message, answer.message
    assert planner.detect(['green']).success  # the node serves the next request


def test_find_ranks_the_frame_where_the_object_was_planted_first(ros, node, tmp_path):
    planner = Planner(ros)
    answer = planner.find('green')
    assert not answer.success and 'no frame is stored yet' in answer.message
    base = 1_767_225_600 * 10**9
    planted = base + 3 * 10**8
    scenes = [[], [('red', 10, 10, 50, 50)], [], [GREEN], [('blue', 90, 50, 150, 110)], []]
    bag = write_image_bag(tmp_path / 'bag', [
        BagFrame(colour_scene(squares=squares), base + i * 10**8, 'bench')
        for i, squares in enumerate(scenes)])
    for count, (_, _, _, data) in enumerate(read_messages(bag), 1):
        planner.image_pub.publish(data)  # the recorded CDR, as `ros2 bag play` sends it
        assert ros.spin_until(lambda: len(planner.detections) == count, 10)
    answer = planner.find('a green', top_k=3)
    assert answer.success, answer.message
    first = answer.matches[0]
    assert first.header.stamp.sec * 10**9 + first.header.stamp.nanosec == planted
    assert first.header.frame_id == 'bench' and first.camera == '/image'
    assert first.score > 0.9 > answer.matches[1].score
    assert abs(first.bbox.center.position.x - 70) < 15
    assert abs(first.bbox.center.position.y - 60) < 15
    assert len(answer.matches) == 3
    # a time range after the planted frame leaves it out
    after = Find.Request(query='green', top_k=5)
    after.start.sec, after.start.nanosec = divmod(planted + 1, 10**9)
    later = planner.call(planner.find_client, after)
    assert later.success and len(later.matches) == 2
    for query, top_k, message in (('  ', 3, 'query must not be blank'),
                                  ('green', 0, 'top_k must lie in [1, 100]'),
                                  ('green', 101, 'top_k must lie in [1, 100]')):
        answer = planner.find(query, top_k)
        assert not answer.success and message in answer.message, answer.message


def test_services_answer_with_the_node_and_its_caller_in_one_executor(ros):
    """The caller spins the executor the node's waiting service coroutines are in."""
    start_colour_node(ros, labels=['red'])
    planner = Planner(ros)
    planner.image_pub.publish(image_message(colour_scene(squares=[GREEN]), 'bench', 1))
    assert ros.spin_until(lambda: len(planner.detections) == 1, 10)
    answer = planner.detect(['green'])
    assert answer.success and answer.detections.detections
    assert planner.find('green', 1).matches[0].header.frame_id == 'bench'


def test_a_waiting_query_holds_neither_the_executor_nor_the_streaming(ros):
    """Inference held mid-frame: the query waits, frames are still taken, then both go on."""
    encoder = ColourEncoder()
    node = start_colour_node(ros, encoder=encoder, labels=['red'])
    planner = Planner(ros)
    planner.image_pub.publish(image_message(colour_scene(squares=[GREEN]), 'first', 1))
    assert ros.spin_until(lambda: len(planner.detections) == 1, 10)
    encoder.gate = threading.Event()  # the next encoder call waits for it
    started = encoder.calls_started
    planner.image_pub.publish(image_message(colour_scene(squares=[GREEN]), 'held', 2))
    assert ros.spin_until(lambda: encoder.calls_started > started, 10)
    future = planner.detect_client.call_async(Detect.Request(labels=['green']))
    for stamp in (3, 4, 5):  # the executor still takes frames while the query waits
        planner.image_pub.publish(image_message(colour_scene(), 'meanwhile', stamp))
        assert ros.spin_until(lambda: node.counters['received'] == stamp, 10), node.counters
    assert not future.done()
    encoder.gate.set()
    assert ros.spin_until(future.done, 10)
    answer = future.result()  # on the latest frame when the query ran: a bare bench
    assert answer.success and answer.detections.header.frame_id == 'meanwhile'
    assert answer.detections.detections == []
    assert ros.spin_until(lambda: len(planner.detections) >= 3, 10)  # streaming goes on
    assert planner.detections[-1].header.frame_id == 'meanwhile'


def test_a_query_waiting_when_the_node_is_deactivated_is_answered_at_once(ros):
    encoder = ColourEncoder()
    node = start_colour_node(ros, encoder=encoder)
    planner = Planner(ros)
    encoder.gate = threading.Event()  # inference holds the first frame
    planner.image_pub.publish(image_message(colour_scene(squares=[GREEN]), 'held', 1))
    assert ros.spin_until(lambda: encoder.calls_started > 0, 10)
    future = planner.detect_client.call_async(Detect.Request(labels=['green']))
    assert not ros.spin_until(future.done, 0.5)
    node.trigger_deactivate()  # leaves the held frame after STOP_WAIT_SEC
    assert ros.spin_until(future.done, 10)
    answer = future.result()
    assert not answer.success and 'deactivated' in answer.message, answer.message
    encoder.gate.set()
    answer = planner.detect(['green'])
    assert not answer.success and 'not active' in answer.message, answer.message


def test_find_without_a_memory_says_so(ros):
    start_colour_node(ros, memory=False)
    planner = Planner(ros)
    planner.image_pub.publish(image_message(colour_scene(), 'bench', 1))
    assert ros.spin_until(lambda: len(planner.detections) == 1, 10)
    answer = planner.find('green')
    assert not answer.success and 'the memory is off' in answer.message
