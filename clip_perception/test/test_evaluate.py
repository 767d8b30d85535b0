"""
The evaluation contract, on scenes whose answers are known.

The colour double (test/colour_encoder.py) stands in for CLIP, so every figure
of `python -m clip_perception.eval` has a value worked out by hand.
"""
import re

from clip_perception.engine.detector import ZeroShotDetector
from clip_perception.tools import compare_localizers, evaluate
from clip_perception.tools.datasets import AnnotatedScene, read_scenes, write_rgb, write_scenes
from colour_encoder import colour_scene, COLOUR_SETTINGS, ColourEncoder
import pytest

CONTRACT = re.compile(r'scene_accuracy: (\S+) ap50: (\S+) ap50_95: (\S+) fp_per_blank: (\S+)')
# (truth label or None for an empty bench, squares drawn)
SCENES = [('red', [('red', 20, 20, 80, 80)]),
          ('green', [('green', 70, 30, 130, 90)]),
          ('blue', [('blue', 10, 50, 70, 110)]),
          (None, []),
          (None, [])]


def write_colour_scenes(folder, truth_of=lambda label: label):
    """Write SCENES as a COCO-style set; `truth_of` may relabel the truths."""
    scenes = []
    for index, (label, squares) in enumerate(SCENES):
        path = folder / 'scenes' / f'{index:03d}.png'
        write_rgb(path, colour_scene(squares=squares))
        objects = tuple((truth_of(name), (x0, y0, x1, y1)) for name, x0, y0, x1, y1 in squares)
        scenes.append(AnnotatedScene(path, 160, 120, objects))
    write_scenes(folder, scenes, COLOUR_SETTINGS.labels)
    return read_scenes(folder)


def test_right_answers_and_empty_benches(tmp_path):
    detector = ZeroShotDetector(ColourEncoder(), COLOUR_SETTINGS)
    figures = evaluate.evaluate_scenes(detector, write_colour_scenes(tmp_path))
    assert figures['single_object_scenes'] == 3 and figures['blank_frames'] == 2
    assert figures['scene_accuracy'] == 1.0
    assert figures['fp_per_blank'] == 0.0
    assert figures['ap50'] == 1.0
    assert 0.0 < figures['ap50_95'] < 1.0  # window boxes are not pixel-exact
    assert figures['confusions'] == {}


def test_a_wrong_answer_and_a_missed_box_count(tmp_path):
    # The truth of the red square says "green": the classification answers red
    # (1 of 3 wrong), the red detection is a false positive and that green is missed.
    scenes = write_colour_scenes(tmp_path, lambda name: {'red': 'green'}.get(name, name))
    detector = ZeroShotDetector(ColourEncoder(), COLOUR_SETTINGS)
    figures = evaluate.evaluate_scenes(detector, scenes)
    assert figures['scene_accuracy'] == pytest.approx(2 / 3)
    assert figures['confusions'] == {'green -> red': 1}
    assert figures['ap50_per_label']['green'] == pytest.approx(0.5)


def test_the_command_prints_the_contract_last(tmp_path, monkeypatch, capsys):
    write_colour_scenes(tmp_path)
    params = tmp_path / 'params.yaml'
    params.write_text('/**:\n  ros__parameters:\n    labels: [red, green, blue]\n'
                      '    prompt_templates: ["a {} thing", "a photo of {}"]\n'
                      '    background_prompts: ["a grey background"]\n'
                      '    score_threshold: 0.6\n')
    monkeypatch.setattr(evaluate, 'load_encoder', lambda *args: ColourEncoder())
    monkeypatch.setattr(evaluate, 'resolve_model', lambda reference: reference)
    evaluate.main(['--model', 'colours', '--params', str(params), '--scenes', str(tmp_path),
                   '--json', str(tmp_path / 'report.json')])
    last = capsys.readouterr().out.strip().splitlines()[-1]
    match = CONTRACT.fullmatch(last)
    assert match, last
    assert [float(v) for v in match.groups()[:2]] == [1.0, 1.0]
    assert float(match.group(4)) == 0.0
    assert (tmp_path / 'report.json').is_file()


LOCALIZER_LINE = re.compile(
    r'localizer: (\w+) style: (\w+) scene_accuracy: (\S+) ap50: (\S+) ap50_95: (\S+) '
    r'fp_per_blank: (\S+) fps: (\S+) gflops: (\S+)')


def test_localizers_side_by_side_print_one_line_per_run_and_style(
        tmp_path, monkeypatch, capsys):
    write_colour_scenes(tmp_path / 'own')
    runs = []
    for name in ('windows', 'dense'):
        params = tmp_path / f'{name}.yaml'
        params.write_text('/**:\n  ros__parameters:\n    model: colours\n'
                          '    labels: [red, green, blue]\n'
                          '    prompt_templates: ["a {} thing", "a photo of {}"]\n'
                          '    background_prompts: ["a grey background"]\n'
                          f'    score_threshold: 0.6\n    localizer: {name}\n'
                          '    map_size: 96\n')
        runs += ['--run', name, str(params)]
    monkeypatch.setattr(compare_localizers, 'load_encoder', lambda *args: ColourEncoder())
    monkeypatch.setattr(compare_localizers, 'resolve_model', lambda reference: reference)
    compare_localizers.main(runs + ['--scenes', 'own', str(tmp_path / 'own'),
                                    '--json', str(tmp_path / 'report.json')])
    lines = capsys.readouterr().out.strip().splitlines()
    matches = [LOCALIZER_LINE.fullmatch(line) for line in lines]
    assert all(matches), lines
    assert [m.group(1, 2) for m in matches] == [('windows', 'own'), ('dense', 'own')]
    for match in matches:
        accuracy, ap50, _, fp, fps, _ = map(float, match.groups()[2:])
        assert (accuracy, ap50, fp) == (1.0, 1.0, 0.0)
        assert fps > 0


def test_gflops_are_counted_from_the_encoder_passes(tiny_clip_dir):
    from clip_perception.engine.model_loading import load_clip
    from dataclasses import replace
    encoder = load_clip(str(tiny_clip_dir), 'cpu')
    frame = colour_scene()
    counted = {}
    for localizer in ('windows', 'dense', 'gradcam'):
        detector = ZeroShotDetector(encoder, replace(COLOUR_SETTINGS, localizer=localizer,
                                                     map_size=32))
        counted[localizer] = compare_localizers.frame_gflops(detector, frame)
    # dense is one 32×32 pass (4 patches, no class token through the last MLP); windows are
    # one 32×32 pass per window plus the whole frame; gradcam adds the backward passes
    assert 0 < counted['dense'] < counted['gradcam'] < counted['windows']
