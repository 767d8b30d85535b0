"""The evaluator's detection metrics on hand-made cases with known answers."""
import math

from clip_perception.tools.metrics import (average_precision, detection_ap, detection_ap_50_95,
                                           frame_outcome, mean_ap)
import pytest

TRUTHS = [[('hammer', (10, 10, 50, 30))],
          [('hammer', (0, 0, 20, 20)), ('wrench', (40, 40, 60, 90))],
          []]


def test_perfect_predictions_give_ap_1():
    predictions = [[(label, 0.9, box) for label, box in image] for image in TRUTHS]
    per_label = detection_ap(predictions, TRUTHS)
    assert per_label == {'hammer': 1.0, 'wrench': 1.0}
    assert mean_ap(per_label) == 1.0


def test_wrong_labels_give_ap_0():
    swap = {'hammer': 'wrench', 'wrench': 'hammer'}
    predictions = [[(swap[label], 0.9, box) for label, box in image] for image in TRUTHS]
    assert detection_ap(predictions, TRUTHS) == {'hammer': 0.0, 'wrench': 0.0}


def test_misplaced_boxes_and_duplicates_are_false_positives():
    predictions = [[('hammer', 0.9, (10, 10, 50, 30)), ('hammer', 0.8, (11, 10, 50, 30))],
                   [('hammer', 0.7, (100, 100, 120, 120)), ('wrench', 0.6, (40, 40, 60, 90))],
                   [('wrench', 0.95, (0, 0, 5, 5))]]
    per_label = detection_ap(predictions, TRUTHS)
    # hammer: TP (0.9), FP duplicate (0.8), FP misplaced (0.7); 2 truths -> AP = 1/2
    assert per_label['hammer'] == pytest.approx(0.5)
    # wrench: FP on the empty frame ranked first (0.95), then the TP -> precision 1/2 at recall 1
    assert per_label['wrench'] == pytest.approx(0.5)


def test_average_precision_is_the_area_under_the_precision_envelope():
    # ranked hits: T F T F, 2 truths -> recall 0.5 at precision 1, recall 1 at precision 2/3
    assert average_precision([4, 3, 2, 1], [True, False, True, False], 2) == pytest.approx(
        0.5 * 1 + 0.5 * 2 / 3)
    assert average_precision([], [], 3) == 0.0
    assert math.isnan(average_precision([1.0], [False], 0))


def test_ap_50_95_counts_the_thresholds_a_box_passes():
    truths = [[('hammer', (0, 0, 100, 100))]]
    exact = [[('hammer', 0.9, (0, 0, 100, 100))]]
    assert detection_ap_50_95(exact, truths) == {'hammer': 1.0}
    # IoU 0.72: a hit at 0.50, 0.55, 0.60, 0.65 and 0.70, a miss at the 5 higher ones
    loose = [[('hammer', 0.9, (0, 0, 100, 72))]]
    assert detection_ap_50_95(loose, truths) == {'hammer': pytest.approx(0.5)}


def test_frame_outcome_tells_found_missed_wrong_label_and_false():
    truths = [('hammer', (0, 0, 40, 20)), ('wrench', (60, 0, 100, 20)),
              ('pliers', (0, 60, 40, 80))]
    detections = [('hammer', 0.9, (0, 0, 40, 20)),   # found
                  ('hammer', 0.8, (1, 0, 40, 20)),   # a duplicate: false
                  ('pliers', 0.7, (60, 0, 100, 21)),  # the wrench named pliers: wrong label
                  ('wrench', 0.6, (200, 200, 220, 220))]  # nothing there: false
    assert frame_outcome(detections, truths) == {'found': 1, 'wrong_label': 1, 'missed': 1,
                                                 'false': 2}
    assert frame_outcome([], []) == {'found': 0, 'wrong_label': 0, 'missed': 0, 'false': 0}
