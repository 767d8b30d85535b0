"""
Test-wide ROS 2 isolation and fixtures shared by every test module.

The test process takes the environment of a graph kept to this machine
(clip_perception.ros.environment) with a ROS_DOMAIN_ID of its own per run (and
per xdist worker), so runs on one machine never see each other's nodes; child
processes inherit it. Tests never reach a model hub.
"""
import os

from clip_perception.ros.environment import local_graph_environment
import pytest


def _domain_id() -> int:
    if 'CLIP_PERCEPTION_TEST_DOMAIN_ID' in os.environ:
        return int(os.environ['CLIP_PERCEPTION_TEST_DOMAIN_ID'])
    worker = os.environ.get('PYTEST_XDIST_WORKER', 'gw0')
    index = int(worker[2:]) if worker[2:].isdigit() else 0
    # Domain ids 1..100 map onto distinct UDP port ranges on Linux.
    return 1 + (os.getpid() + 7 * index) % 100


os.environ.update(local_graph_environment(_domain_id()), HF_HUB_OFFLINE='1',
                  TRANSFORMERS_OFFLINE='1')

from ros_helpers import RosTestContext  # noqa: E402  (after the environment is set)


@pytest.fixture
def ros():
    """Give a fresh rclpy context on this run's domain, with an executor; shut down after."""
    helper = RosTestContext(domain_id=int(os.environ['ROS_DOMAIN_ID']))
    try:
        yield helper
    finally:
        helper.shutdown()


@pytest.fixture(scope='session')
def tiny_clip_dir(tmp_path_factory):
    """
    Build a random-init CLIP of the real architecture (tiny sizes), once per run.

    Saved like a released checkpoint, with a BPE tokenizer built here (no download).
    """
    from clip_perception.tools.model_building import build_random_model_directory
    return build_random_model_directory(tmp_path_factory.mktemp('tiny_clip') / 'model')


@pytest.fixture(scope='session')
def tiny_conv_dir(tmp_path_factory):
    """Build a random-init dual encoder with a ConvNeXt image tower (tiny sizes), once per run."""
    from clip_perception.tools.model_building import (build_random_model_directory,
                                                      TEST_CONV_SIZE)
    return build_random_model_directory(tmp_path_factory.mktemp('tiny_conv') / 'model',
                                        TEST_CONV_SIZE)


@pytest.fixture(scope='session', params=['owlvit', 'owlv2'])
def tiny_owl_dir(request, tmp_path_factory):
    """Build a random-init OWL-ViT or OWLv2 detection model (tiny sizes), once per run."""
    from clip_perception.tools.model_building import build_random_owl_directory
    return build_random_owl_directory(
        tmp_path_factory.mktemp(f'tiny_{request.param}') / 'model', request.param)
