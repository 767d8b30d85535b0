"""The ByteTrack-style tracker: ids across frames, the low-score pass, retirement."""
import itertools
import re

from clip_perception.engine.boxes import Detection
from clip_perception.engine.tracking import Tracker, TrackerSettings
from clip_perception.tools.metrics import tracking_metrics
from clip_perception.tools.sequences import make_sequence
import numpy as np
import pytest


def box(x, y, size=40):
    return (float(x), float(y), float(x + size), float(y + size))


def ids_by_label(tracked):
    return {d.label: d.track_id for d in tracked}


def test_a_moving_object_keeps_its_id_and_a_new_one_gets_another():
    tracker = Tracker(TrackerSettings(high_score=0.5, low_score=0.1, match_iou=0.3))
    first = tracker.update([Detection('hammer', 0.9, box(10, 10))])
    (hammer_id,) = [d.track_id for d in first]
    for step in range(1, 8):  # 12 px per frame: IoU with the last box alone 0.54
        tracked = tracker.update([Detection('hammer', 0.9, box(10 + 12 * step, 10)),
                                  *([Detection('wrench', 0.8, box(200, 100))] if step > 3
                                    else [])])
        assert ids_by_label(tracked)['hammer'] == hammer_id
    assert ids_by_label(tracked)['wrench'] not in ('', hammer_id)


def test_the_constant_velocity_prediction_bridges_a_fast_move():
    tracker = Tracker(TrackerSettings(match_iou=0.3))
    x, ids = 0, set()
    for step in range(10):  # speeding up to 25 px per frame on a 40 px box: IoU of two
        x += min(12 + 4 * step, 25)  # consecutive boxes 0.23, under match_iou
        (found,) = tracker.update([Detection('hammer', 0.9, box(x, 0))])
        ids.add(found.track_id)
    assert len(ids) == 1
    without = Tracker(TrackerSettings(match_iou=0.3, min_hits=1))
    without.update([Detection('hammer', 0.9, box(0, 0))])
    (jumped,) = without.update([Detection('hammer', 0.9, box(25, 0))])
    assert jumped.track_id == '2'  # no velocity yet: a new track


def test_low_scores_continue_a_track_but_never_start_one():
    tracker = Tracker(TrackerSettings(high_score=0.5, low_score=0.1))
    (seen,) = tracker.update([Detection('pliers', 0.9, box(50, 50))])
    (dipped,) = tracker.update([Detection('pliers', 0.2, box(52, 50))])  # occluded a moment
    assert dipped.track_id == seen.track_id and dipped.score == 0.2
    assert tracker.update([Detection('wrench', 0.3, box(200, 200))]) == []  # no new track
    assert tracker.update([Detection('pliers', 0.05, box(52, 50))]) == []  # under low_score


def test_a_new_track_is_published_once_it_has_been_seen_in_min_hits_frames():
    tracker = Tracker(TrackerSettings(min_hits=2))
    (start,) = tracker.update([Detection('hammer', 0.9, box(10, 10))])  # in view at the start
    assert start.track_id == '1'
    # a false wrench for one frame: never published, and its tentative track is dropped
    assert ids_by_label(tracker.update([Detection('hammer', 0.9, box(12, 10)),
                                        Detection('wrench', 0.9, box(200, 100))])) == {
        'hammer': '1'}
    assert ids_by_label(tracker.update([Detection('hammer', 0.9, box(14, 10))])) == {
        'hammer': '1'}
    assert [t.label for t in tracker.tracks] == ['hammer']
    # pliers coming into view: held back one frame, then published with their id
    assert ids_by_label(tracker.update([Detection('hammer', 0.9, box(16, 10)),
                                        Detection('pliers', 0.9, box(100, 100))])) == {
        'hammer': '1'}
    (hammer, pliers) = sorted(tracker.update([Detection('hammer', 0.9, box(18, 10)),
                                              Detection('pliers', 0.9, box(101, 100)),
                                              Detection('wrench', 0.9, box(300, 20))]),
                              key=lambda d: d.label)
    assert (hammer.track_id, pliers.track_id) == ('1', '3')
    # the new wrench's tentative track takes no uncertain detection, and goes
    assert ids_by_label(tracker.update([Detection('hammer', 0.9, box(20, 10))],
                                       [Detection('wrench', 0.3, box(300, 20))])) == {
        'hammer': '1'}
    assert sorted(t.label for t in tracker.tracks) == ['hammer', 'pliers']
    # a confirmed track survives a miss
    assert ids_by_label(tracker.update([Detection('pliers', 0.9, box(102, 100))])) == {
        'pliers': '3'}


def test_labels_never_share_a_track():
    tracker = Tracker(TrackerSettings(min_hits=1))
    (hammer,) = tracker.update([Detection('hammer', 0.9, box(10, 10))])
    (wrench,) = tracker.update([Detection('wrench', 0.9, box(10, 10))])
    assert wrench.track_id != hammer.track_id


def test_tracks_retire_after_max_missed_frames_and_ids_are_not_reused():
    ids = itertools.count(1)
    tracker = Tracker(TrackerSettings(max_missed=2, min_hits=1), ids)
    (first,) = tracker.update([Detection('hammer', 0.9, box(10, 10))])
    tracker.update([])
    tracker.update([])  # missed twice: still kept
    (back,) = tracker.update([Detection('hammer', 0.9, box(10, 10))])
    assert back.track_id == first.track_id
    for _ in range(3):
        tracker.update([])
    assert tracker.tracks == []
    (later,) = tracker.update([Detection('hammer', 0.9, box(10, 10))])
    assert later.track_id not in ('', first.track_id)
    other = Tracker(ids=ids)  # another camera sharing the counter: ids stay unique
    (elsewhere,) = other.update([Detection('hammer', 0.9, box(10, 10))])
    assert elsewhere.track_id not in (first.track_id, later.track_id)


@pytest.mark.parametrize('fields,message', [
    ({'high_score': 0.3, 'low_score': 0.5}, 'low_score <= high_score'),
    ({'match_iou': 0.0}, 'track_match_iou'),
    ({'max_missed': -1}, 'track_max_missed'),
    ({'min_hits': 0}, 'track_min_hits'),
])
def test_invalid_tracker_settings_are_refused(fields, message):
    with pytest.raises(ValueError, match=message):
        TrackerSettings(**fields)


def test_tracking_metrics_match_hand_counts():
    a, b = (0, 0, 10, 10), (50, 50, 60, 60)
    frames = [([(1, 'h', a), (2, 'w', b)], [(7, 'h', a), (8, 'w', b)]),
              ([(1, 'h', a), (2, 'w', b)], [(7, 'h', a), (9, 'w', b)]),  # w: a new id
              ([(1, 'h', a)], [(7, 'h', a), (5, 'h', b)]),  # a false box
              ([(1, 'h', a)], [(6, 'w', a)])]  # the wrong label matches nothing
    figures = tracking_metrics([frames])
    # 6 truths; 1 switch, 2 false, 1 miss: MOTA 1 - 4/6
    assert (figures['objects'], figures['id_switches'], figures['false_positives'],
            figures['misses']) == (6, 1, 2, 1)
    assert figures['mota'] == pytest.approx(1 - 4 / 6)
    # IDF1: 1<->7 3 frames, 2<->8 1 frame: IDTP 4 of 6 truths and 7 tracked boxes
    assert figures['idf1'] == pytest.approx(2 * 4 / (6 + 7))


def test_the_tracker_follows_the_synthetic_videos_given_their_true_boxes(tmp_path):
    """What the tracker alone does: only a tool's return after leaving costs an id."""
    truth = []
    for seed in (1, 2):
        sequence = make_sequence(np.random.default_rng(seed), 20)
        truth.append([[o[:3] for o in objects] for _, _, objects in sequence])
    assert any(len(objects) for frames in truth for objects in frames)
    runs = []
    for frames in truth:
        tracker = Tracker(TrackerSettings(high_score=0.5, min_hits=1))
        runs.append([(objects, [(d.track_id, d.label, d.box) for d in tracker.update(
            [Detection(label, 0.9, tuple(map(float, box))) for _, label, box in objects])])
            for objects in frames])
    figures = tracking_metrics(runs)
    assert figures['misses'] == figures['false_positives'] == 0
    returns = sum(1 for frames in truth for i in range(1, len(frames))
                  for object_id in {o[0] for o in frames[i]} - {o[0] for o in frames[i - 1]})
    assert figures['id_switches'] <= returns
    assert figures['mota'] >= 0.9


@pytest.mark.slow
def test_the_tracking_evaluation_prints_its_line(tmp_path, capsys):
    """`make eval`'s tracking step end to end: videos as bags, the demo model, the line."""
    from clip_perception.tools import evaluate_tracking, sequences
    from clip_perception.tools.assets import DEMO_MODEL, DEMO_PARAMS
    pytest.importorskip('rosbags', reason='rosbags is not installed (pip install rosbags)')
    assert sequences.main([str(tmp_path), '--sequences', '1', '--frames', '5']) == 0
    assert (tmp_path / 'sequence_0' / 'metadata.yaml').is_file()
    assert evaluate_tracking.main(['--model', str(DEMO_MODEL), '--params', str(DEMO_PARAMS),
                                   '--sequences', str(tmp_path),
                                   '--json', str(tmp_path / 'out.json')]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert any(re.match(r'3d: median centre error [\d.]+ mm over \d+ tracked boxes', line)
               or line.startswith('3d: median centre error nan mm') for line in lines), lines
    last = lines[-1]
    assert re.fullmatch(r'tracking: mota: -?\d+\.\d{4} idf1: \d\.\d{4} id_switches: \d+', last)
