"""
~/find on a memory store over DDS: Milvus Lite for real, across restarts, robots and outages.

Nodes (the colour encoder) in executors of their own; a probe node per robot
publishes frames and calls ~/find.
"""
import socket
import subprocess
import sys

from clip_perception.ros.memory_backend import robot_name
from clip_perception_interfaces.srv import Find
from colour_encoder import colour_scene
from diagnostic_msgs.msg import DiagnosticArray
from node_helpers import diagnostic_values, image_message, Probe, RELIABLE, threaded_node
import pytest

pytest.importorskip('milvus_lite', reason='milvus-lite is not installed (pip install milvus-lite)')
pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

GREEN = ('green', 40, 30, 100, 90)


class Robot(Probe):
    """Publishes frames to one robot's node and asks its ~/find."""

    def __init__(self, ros, namespace=''):
        super().__init__(ros, f'probe_{namespace or "root"}', namespace)
        prefix = f'/{namespace}' if namespace else ''
        self.find_client = self.node.create_client(Find, f'{prefix}/clip_perception/find')
        assert self.find_client.wait_for_service(timeout_sec=10)
        assert ros.wait_for_subscribers(self.image_pub)

    def send(self, squares, stamp_sec):
        count = len(self.detections)
        self.image_pub.publish(image_message(colour_scene(squares=squares), 'bench', stamp_sec))
        assert self.ros.spin_until(lambda: len(self.detections) > count, 10)

    def find(self, query, **fields):
        future = self.find_client.call_async(Find.Request(query=query, top_k=3, **fields))
        assert self.ros.spin_until(future.done, 30), 'no answer'
        return future.result()


class MilvusServer:
    """A Milvus server in a process of its own: milvus-lite's gRPC server on a free port."""

    def __init__(self, data):
        with socket.socket() as probe:
            probe.bind(('127.0.0.1', 0))
            self.port = probe.getsockname()[1]
        self.data, self.process = data, None
        self.uri = f'http://127.0.0.1:{self.port}'
        self.start()

    def start(self):
        self.process = subprocess.Popen(
            [sys.executable, '-m', 'milvus_lite', 'server', '--data-dir', str(self.data),
             '--host', '127.0.0.1', '--port', str(self.port)], stdout=subprocess.PIPE,
            text=True)
        assert 'listening' in self.process.stdout.readline()

    def stop(self):
        self.process.kill()
        self.process.wait()


def reported_store(statuses, state, frames):
    """Return a check: the last /diagnostics says memory_store `state` after `frames` frames."""
    def check():
        values = statuses and diagnostic_values(statuses[-1])
        return values and values.get('memory_store') == state and int(
            values['frames_processed']) >= frames
    return check


def written(node, frames):
    return lambda: node.memory_backend.writer.state.written_frames >= frames


def test_robot_names_default_to_the_namespace_then_the_node_name():
    assert robot_name('', '/warehouse/robot_7', 'clip_perception') == 'warehouse/robot_7'
    assert robot_name('', '/', 'clip_perception') == 'clip_perception'
    assert robot_name('arm_2', '/robot_7', 'clip_perception') == 'arm_2'


def test_a_node_with_a_milvus_file_remembers_across_a_restart(ros, tmp_path):
    store = f'milvus:{tmp_path / "robot.db"}'
    node, stop = threaded_node(ros, memory_period=0.0, memory_store=store)
    robot = Robot(ros)
    for second, squares in enumerate([[], [GREEN], [('red', 10, 10, 50, 50)]], 1):
        robot.send(squares, second)
    assert ros.spin_until(written(node, 3), 30), node.memory_backend.writer.state
    answer = robot.find('green')
    assert answer.success, answer.message
    assert answer.matches[0].header.stamp.sec == 2 and answer.matches[0].robot == \
        'clip_perception'
    assert 'the memory store milvus:' in answer.message
    stop()
    node, stop = threaded_node(ros, memory_period=0.0, memory_store=store)
    assert ros.spin_until(lambda: node.memory_backend.writer.state.connected, 30)
    again = robot.find('a green')  # no frame since the restart: the store remembers
    assert again.success, again.message
    assert again.matches[0].header.stamp.sec == 2
    assert robot.find('green', camera='/elsewhere').matches == []
    stop()


def test_two_robots_write_into_one_store_and_find_filters_by_robot(ros, tmp_path):
    store = f'milvus:{tmp_path / "fleet.db"}'
    nodes = [threaded_node(ros, namespace=name, memory_period=0.0, memory_store=store)
             for name in ('robot_a', 'robot_b')]
    robot_a, robot_b = Robot(ros, 'robot_a'), Robot(ros, 'robot_b')
    robot_a.send([GREEN], 10)
    robot_b.send([GREEN], 20)
    for node, _ in nodes:
        assert ros.spin_until(written(node, 1), 30)
    both = robot_a.find('green')
    assert both.success and {m.robot for m in both.matches} == {'robot_a', 'robot_b'}
    only_b = robot_a.find('green', robot='robot_b')
    assert [(m.robot, m.header.stamp.sec) for m in only_b.matches] == [('robot_b', 20)]
    for _, stop in nodes:
        stop()


def test_a_store_that_is_away_never_stops_detection_and_shows_in_diagnostics(ros, tmp_path):
    path = tmp_path / 'held.db'
    # another process holds the Milvus Lite file: this node cannot open it
    holder = subprocess.Popen([sys.executable, '-c', (
        'import sys, time; from pymilvus import MilvusClient; '
        f'MilvusClient({str(path)!r}); print("held", flush=True); time.sleep(120)')],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == 'held'
        node, stop = threaded_node(ros, memory_period=0.0, memory_store=f'milvus:{path}')
        robot = Robot(ros)
        statuses = []
        robot.node.create_subscription(DiagnosticArray, '/diagnostics', statuses.append,
                                       RELIABLE)
        for second in range(1, 4):
            robot.send([GREEN], second)  # detection goes on: every frame is answered
        assert ros.spin_until(lambda: node.memory_backend.writer.state.failures >= 1, 30)
        answer = robot.find('green')
        assert not answer.success and 'is away' in answer.message
        assert ros.spin_until(reported_store(statuses, 'away', 3), 10)
        stop()
    finally:
        holder.kill()
        holder.wait()


def test_a_fleet_server_that_goes_away_mid_stream_costs_memory_not_detection(ros, tmp_path):
    server = MilvusServer(tmp_path / 'fleet')
    try:
        node, stop = threaded_node(ros, memory_period=0.0, memory_store=server.uri)
        writer = node.memory_backend.writer
        robot = Robot(ros)
        statuses = []
        robot.node.create_subscription(DiagnosticArray, '/diagnostics', statuses.append,
                                       RELIABLE)
        robot.send([GREEN], 1)
        assert ros.spin_until(written(node, 1), 30), writer.state
        server.stop()  # the fleet's server goes away mid-stream
        for second in range(2, 5):
            robot.send([GREEN], second)  # every frame is still detected and answered
        assert ros.spin_until(lambda: writer.state.failures >= 1, 60), writer.state
        assert ros.spin_until(reported_store(statuses, 'away', 4), 10)
        assert writer.state.dropped_frames >= 1
        server.start()  # back: the writer opens it again
        assert ros.spin_until(lambda: writer.state.connected, 60), writer.state
        robot.send([GREEN], 5)
        assert ros.spin_until(written(node, 2), 30), writer.state
        answer = robot.find('green')
        assert answer.success, answer.message
        # what was written before and after the outage; nothing of the outage
        assert sorted(m.header.stamp.sec for m in answer.matches) == [1, 5]
        stop()
    finally:
        server.stop()
