"""
The bundled demo model on the bundled bag, through the node over DDS.

Pinned behaviour: nothing on the empty frames, and at least FOUND_AT_LEAST of
the planted tools found (right label, IoU >= 0.5). The model (with its box
regressor) finds 15 of the 17 today; the goal of the detection issue (at least
90% found, at most one false detection per frame) is not reached yet, see
models/workbench_demo/MODEL.md. `make demo`'s command runs end to end.
"""
import collections
import json
import subprocess
import sys

from clip_perception.tools.assets import DEMO_BAG
from clip_perception.tools.demo import planted_outcome, truth_path
from node_helpers import replay_demo_bag
import pytest

# Nodes over DDS, processes: the slow tier (make test runs it, make test-fast does not).
pytestmark = pytest.mark.slow
# Bags are read and written with rosbags (PyPI), an optional test dependency.
pytest.importorskip('rosbags', reason='rosbags is not installed (pip install rosbags)')

FOUND_AT_LEAST = 0.8


@pytest.mark.timeout(300)
def test_demo_model_finds_the_planted_tools_in_the_bundled_bag(ros):
    # the model as a ROS user names an installed package's file
    _, _, received = replay_demo_bag(
        ros, model='package://clip_perception/models/workbench_demo')
    truth = json.loads(truth_path(DEMO_BAG).read_text())
    assert len(received) == len(truth) >= 8
    totals = collections.Counter()
    for frame, out in zip(truth, received):
        stamp = out.header.stamp.sec * 10**9 + out.header.stamp.nanosec
        assert stamp == frame['stamp_ns']
        labels = [d.results[0].hypothesis.class_id for d in out.detections]
        if not frame['objects']:
            assert labels == [], f'detections on an empty frame: {labels}'
        totals.update(planted_outcome(out.detections, frame['objects']))
    planted = sum(len(frame['objects']) for frame in truth)
    assert planted >= 10 and any(not frame['objects'] for frame in truth)
    assert totals['found'] >= FOUND_AT_LEAST * planted, totals


@pytest.mark.timeout(300)
def test_the_demo_command_runs_end_to_end(tmp_path):
    result = subprocess.run([sys.executable, '-m', 'clip_perception.demo', '--out',
                             str(tmp_path / 'demo_output')], capture_output=True, text=True,
                            timeout=280)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1].startswith('demo summary:') and 'node exit code 0' in lines[-1]
    frames = sorted((tmp_path / 'demo_output').glob('frame_*.png'))
    truth = json.loads(truth_path(DEMO_BAG).read_text())
    assert len(frames) == len(truth)
    assert sum(line.startswith('frame ') for line in lines) == len(truth)
