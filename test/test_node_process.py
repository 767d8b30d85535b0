"""
The node as its own process, started the way the launch file starts it.

    clip_perception_node --ros-args --params-file config/workbench.yaml \
        -p model:=<dir> -r image:=/camera/image_raw

with a random-weight CLIP of the real architecture, talked to over DDS.
"""
import os
from pathlib import Path
import signal
import subprocess
import sys

from clip_perception.engine.prompts import DEFAULT_LABELS
from colour_encoder import colour_scene
from node_helpers import image_message, RELIABLE
import pytest
from rcl_interfaces.msg import Parameter as ParameterMsg
from rcl_interfaces.msg import ParameterType, ParameterValue
from rclpy.parameter import Parameter
from rclpy.parameter_client import AsyncParameterClient
from rclpy.qos import DurabilityPolicy, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from vision_msgs.msg import Classification, Detection2DArray, LabelInfo

# Nodes over DDS, processes: the slow tier (make test runs it, make test-fast does not).
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
EXECUTABLE = Path(sys.executable).with_name('clip_perception_node')
LATCHED = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                     durability=DurabilityPolicy.TRANSIENT_LOCAL)
WORKBENCH_LABELS = list(DEFAULT_LABELS)


def start_node(*ros_args):
    command = [str(EXECUTABLE), '--ros-args', '--params-file',
               str(ROOT / 'config' / 'workbench.yaml'), *ros_args]
    return subprocess.Popen(command, env=os.environ.copy(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def stop(process, sig=signal.SIGINT):
    if process.poll() is None:
        process.send_signal(sig)
    try:
        output, _ = process.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        output, _ = process.communicate()
        raise AssertionError(f'node ignored {sig!r}:\n{output}')
    return process.returncode, output


def set_parameter(ros, client, parameter):
    future = client.set_parameters([parameter])
    assert ros.spin_until(future.done, 20), 'no answer from SetParameters'
    return future.result().results[0]


@pytest.fixture
def launched(tiny_clip_dir):
    process = start_node('-p', f'model:={tiny_clip_dir}', '-p', 'device:=cpu',
                         '-r', 'image:=/camera/image_raw')
    yield process
    if process.poll() is None:
        process.kill()
        process.communicate()


@pytest.mark.timeout(180)
def test_launched_node_serves_and_takes_label_changes_at_runtime(ros, launched):
    probe = ros.node('process_probe')
    pub = probe.create_publisher(Image, '/camera/image_raw', RELIABLE)
    detections, classifications, label_infos = [], [], []
    probe.create_subscription(Detection2DArray, '/detections', detections.append, RELIABLE)
    probe.create_subscription(Classification, '/classification', classifications.append,
                              RELIABLE)
    probe.create_subscription(LabelInfo, '/label_info', label_infos.append, LATCHED)
    assert ros.wait_for_subscribers(pub, timeout_sec=60), launched.poll()
    assert ros.spin_until(lambda: label_infos, 10), 'no latched label_info'
    assert [c.class_name for c in label_infos[-1].class_map] == WORKBENCH_LABELS

    frame = image_message(colour_scene(96, 128), 'workbench_camera', 7)
    pub.publish(frame)
    assert ros.spin_until(lambda: detections and classifications, 30)
    assert detections[0].header == frame.header
    assert sorted(r.class_id for r in classifications[0].results) == sorted(WORKBENCH_LABELS)

    client = AsyncParameterClient(probe, 'clip_perception')
    assert client.wait_for_services(timeout_sec=10)
    changed = set_parameter(ros, client, Parameter('labels', value=['hammer', 'mallet']))
    assert changed.successful, changed.reason
    assert ros.spin_until(lambda: [c.class_name for c in label_infos[-1].class_map] ==
                          ['hammer', 'mallet'], 10)
    classifications.clear()
    pub.publish(image_message(colour_scene(96, 128), 'after_change', 8))
    assert ros.spin_until(lambda: classifications, 30)
    assert sorted(r.class_id for r in classifications[-1].results) == ['hammer', 'mallet']
    for detection in detections[-1].detections:
        assert detection.results[0].hypothesis.class_id in ('hammer', 'mallet')

    duplicate = set_parameter(ros, client, Parameter('labels', value=['hammer', 'Hammer']))
    assert not duplicate.successful and 'duplicate labels' in duplicate.reason
    empty = ParameterMsg(name='labels', value=ParameterValue(
        type=ParameterType.PARAMETER_STRING_ARRAY, string_array_value=[]))
    rejected = set_parameter(ros, client, empty)
    assert not rejected.successful and 'must not be empty' in rejected.reason
    threshold = set_parameter(ros, client, Parameter('score_threshold', value=2.0))
    assert not threshold.successful
    assert [c.class_name for c in label_infos[-1].class_map] == ['hammer', 'mallet']

    code, output = stop(launched, signal.SIGINT)
    assert code == 0, output
    assert 'Traceback' not in output, output


def test_sigterm_stops_the_node_cleanly(ros, launched):
    probe = ros.node('sigterm_probe')
    label_infos = []
    probe.create_subscription(LabelInfo, '/label_info', label_infos.append, LATCHED)
    assert ros.spin_until(lambda: label_infos, 60), 'node never came up'
    code, output = stop(launched, signal.SIGTERM)
    assert code == 0, output
    assert 'Traceback' not in output, output


@pytest.mark.parametrize('case', ['missing model', 'pickle checkpoint', 'cuda unavailable',
                                  'invalid labels'])
def test_start_up_errors_give_one_clear_line_and_a_non_zero_exit(
        tiny_clip_dir, tmp_path, case):
    if case == 'cuda unavailable':
        import torch
        if torch.cuda.is_available():
            pytest.skip('this machine has CUDA')
    pickled = tmp_path / 'pickled'
    if case == 'pickle checkpoint':
        import shutil
        shutil.copytree(tiny_clip_dir, pickled)
        (pickled / 'model.safetensors').rename(pickled / 'pytorch_model.bin')
    args, expected = {
        'missing model': (['-p', f'model:={tmp_path / "absent"}'], 'does not exist'),
        'pickle checkpoint': (['-p', f'model:={pickled}'], 'safetensors only'),
        'cuda unavailable': (['-p', f'model:={tiny_clip_dir}', '-p', 'device:=cuda'],
                             'CUDA is not available'),
        'invalid labels': (['-p', f'model:={tiny_clip_dir}', '-p',
                            'labels:=[hammer, hammer]'], 'duplicate labels'),
    }[case]
    process = start_node(*args)
    output, _ = process.communicate(timeout=60)
    assert process.returncode == 1, output
    lines = [line for line in output.splitlines() if 'cannot start' in line]
    assert len(lines) == 1 and expected in lines[0], output
    assert 'Traceback' not in output, output
