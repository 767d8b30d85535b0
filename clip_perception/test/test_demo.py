"""
The bundled demo model on the bundled bag, through the node over DDS.

Pinned behaviour: nothing on the empty frames, at least FOUND_AT_LEAST of the
planted tools found (right label, IoU >= 0.5) and at most FALSE_AT_MOST false
detections per frame. The model (with its box regressor) finds 15 of the 19
with 7 false detections in 12 frames today; the goal of the demo model's issue
(at least 90% found) is not reached yet, see models/workbench_demo/MODEL.md.
`make demo`'s command runs end to end.
"""
import collections
import json
import os
import re
import subprocess
import sys

from clip_perception.tools.assets import DEMO_BAG
from clip_perception.tools.demo import planted_outcome, truth_path
from node_helpers import replay_demo_bag
import pytest
from repository import needs_repository, REPO

# Nodes over DDS, processes: the slow tier (make test runs it, make test-fast does not).
pytestmark = pytest.mark.slow
# Bags are read and written with rosbags (PyPI), an optional test dependency.
pytest.importorskip('rosbags', reason='rosbags is not installed (pip install rosbags)')

FOUND_AT_LEAST = 0.7
FALSE_AT_MOST = 0.75


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
    assert totals['false'] <= FALSE_AT_MOST * len(truth), totals


@pytest.mark.timeout(300)
@needs_repository
def test_the_demo_command_runs_end_to_end(tmp_path):
    """As `make demo` runs it: from the repository's root, with PYTHONSAFEPATH."""
    repo = REPO
    assert re.search(r'^export PYTHONSAFEPATH := 1$', (repo / 'Makefile').read_text(), re.M)
    result = subprocess.run([sys.executable, '-m', 'clip_perception.demo', '--out',
                             str(tmp_path / 'demo_output')], capture_output=True, text=True,
                            timeout=280, cwd=repo, env={**os.environ, 'PYTHONSAFEPATH': '1'})
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-1].startswith('demo summary:') and 'node exit code 0' in lines[-1]
    frames = sorted((tmp_path / 'demo_output').glob('frame_*.png'))
    truth = json.loads(truth_path(DEMO_BAG).read_text())
    assert len(frames) == len(truth)
    assert sum(line.startswith('frame ') for line in lines) == len(truth)


@pytest.mark.timeout(300)
def test_the_demo_replays_depth_and_prints_positions_in_metres(tmp_path):
    """`make demo-3d` in small: a video with depth, the node with depth and tracking."""
    from clip_perception.tools import sequences
    assert sequences.main([str(tmp_path), '--sequences', '1', '--frames', '3']) == 0
    repo = REPO
    result = subprocess.run([sys.executable, '-m', 'clip_perception.demo', '--bag',
                             str(tmp_path / 'sequence_0'), '--out', str(tmp_path / 'out')],
                            capture_output=True, text=True, timeout=280, cwd=repo,
                            env={**os.environ, 'PYTHONSAFEPATH': '1'})
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[-2].startswith('demo summary:') and 'node exit code 0' in lines[-2]
    assert re.match(r"demo 3d: median distance from a planted tool's true centre", lines[-1])
    log = (tmp_path / 'out' / 'node.log').read_text()
    assert 'no 3D for this frame' not in log, log  # every frame had its depth
