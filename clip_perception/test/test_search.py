"""
"Where did I see a hammer?" on the bundled demo bag: the offline search and ~/find.

Both rank the demo model's memory of the bag's frames; the truth file says
which frames show a hammer.
"""
import json
import re

from clip_perception.tools import search
from clip_perception.tools.assets import DEMO_BAG, DEMO_MODEL
from clip_perception.tools.demo import truth_path
from clip_perception_interfaces.srv import Find
import cv2
from node_helpers import replay_demo_bag
import pytest

pytestmark = pytest.mark.slow
pytest.importorskip('rosbags', reason='rosbags is not installed (pip install rosbags)')


def frames_showing(label: str) -> set[int]:
    truth = json.loads(truth_path(DEMO_BAG).read_text())
    return {frame['stamp_ns'] for frame in truth
            if any(o['label'] == label for o in frame['objects'])}


def test_offline_search_ranks_a_frame_with_a_hammer_first(tmp_path, capsys):
    sheet = tmp_path / 'matches.png'
    assert search.main([str(DEMO_BAG), 'a hammer', '--top', '5', '--sheet', str(sheet)]) == 0
    lines = capsys.readouterr().out.splitlines()
    matches = [line for line in lines if re.match(r'\d+\. stamp', line)]
    assert len(matches) == 5
    sec, nanosec = re.search(r'stamp (\d+)\.(\d+)', matches[0]).groups()
    assert int(sec) * 10**9 + int(nanosec) in frames_showing('hammer')
    image = cv2.imread(str(sheet))
    assert image is not None and image.shape[1] > image.shape[0]
    # a faiss IVF shortlist first (what large bags get) finds the same best frame
    assert search.main([str(DEMO_BAG), 'a hammer', '--top', '1', '--index', 'ivf',
                        '--sheet', str(sheet)]) == 0
    assert re.search(r'stamp (\S+)', matches[0]).group(1) in capsys.readouterr().out


def test_find_over_the_replayed_demo_bag_ranks_a_hammer_frame_first(ros):
    _, player, _ = replay_demo_bag(ros, model=str(DEMO_MODEL), memory_period=0.0)
    client = player.create_client(Find, '/clip_perception/find')
    assert client.wait_for_service(timeout_sec=10)
    future = client.call_async(Find.Request(query='a hammer', top_k=3))
    assert ros.spin_until(future.done, 30)
    answer = future.result()
    assert answer.success, answer.message
    first = answer.matches[0]
    assert first.header.stamp.sec * 10**9 + first.header.stamp.nanosec in \
        frames_showing('hammer')
