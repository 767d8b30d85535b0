"""Test-wide ROS 2 isolation and fixtures shared by every test module.

Environment (set before anything imports rclpy):
- ROS_DOMAIN_ID: one per test run (and per xdist worker), so runs on one machine
  never see each other's nodes;
- ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (ROS_LOCALHOST_ONLY is ignored on Kilted);
- FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA: images arrive complete with best-effort QoS;
- AMENT_PREFIX_PATH: the PyPI wheels do not set it; ament_index needs it.
Child processes inherit all of these.
"""
import os
import sys

import pytest


def _domain_id() -> int:
    if 'CLIP_PERCEPTION_TEST_DOMAIN_ID' in os.environ:
        return int(os.environ['CLIP_PERCEPTION_TEST_DOMAIN_ID'])
    worker = os.environ.get('PYTEST_XDIST_WORKER', 'gw0')
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    # Domain ids 1..100 map onto distinct UDP port ranges on Linux.
    return 1 + (os.getpid() + 7 * index) % 100


os.environ['ROS_DOMAIN_ID'] = str(_domain_id())
os.environ['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
os.environ.pop('ROS_LOCALHOST_ONLY', None)
os.environ['FASTDDS_BUILTIN_TRANSPORTS'] = 'LARGE_DATA'
if not os.environ.get('AMENT_PREFIX_PATH'):
    os.environ['AMENT_PREFIX_PATH'] = sys.prefix
# Tests never reach a model hub.
os.environ['HF_HUB_OFFLINE'] = '1'
os.environ['TRANSFORMERS_OFFLINE'] = '1'

from ros_helpers import RosTestContext  # noqa: E402  (after the environment is set)


@pytest.fixture
def ros():
    """A fresh rclpy context on this run's domain, with an executor; shut down after."""
    helper = RosTestContext(domain_id=int(os.environ['ROS_DOMAIN_ID']))
    try:
        yield helper
    finally:
        helper.shutdown()


@pytest.fixture(scope='session')
def tiny_clip_dir(tmp_path_factory):
    """A random-init CLIP of the real architecture (tiny sizes), saved like a released
    checkpoint, with a BPE tokenizer built here (no download)."""
    from clip_perception.model_building import build_random_model_directory
    return build_random_model_directory(tmp_path_factory.mktemp('tiny_clip') / 'model')
