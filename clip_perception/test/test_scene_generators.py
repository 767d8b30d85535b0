"""
The two scene generators: the randomized training style and the held-out style.

Both are deterministic per seed and give boxes inside the frame; the held-out
style writes the COCO-style scene sets the evaluator reads.
"""
from clip_perception.tools import heldout_style
from clip_perception.tools.datasets import read_scenes
from clip_perception.tools.synthetic import BENCHES, make_scene, TOOL_KINDS, TOOLS
import numpy as np


def test_training_style_is_deterministic_and_varied():
    scenes = [make_scene(np.random.default_rng(seed)) for seed in range(40)]
    again = make_scene(np.random.default_rng(7))
    assert np.array_equal(scenes[7].image, again.image) and scenes[7].objects == again.objects
    labels = {obj.label for scene in scenes for obj in scene.objects}
    assert labels == set(TOOLS)
    assert set(TOOL_KINDS) == set(TOOLS) and all(len(kinds) >= 2 for kinds in TOOL_KINDS.values())
    assert len(BENCHES) >= 8
    # benches differ: the frames' mean colours spread widely
    means = np.array([scene.image.reshape(-1, 3).mean(axis=0) for scene in scenes])
    assert means.std(axis=0).min() > 15


def test_held_out_style_writes_annotated_scenes_deterministically(tmp_path):
    heldout_style.make_scenes(tmp_path / 'a', count=6, blank=2, seed=17)
    heldout_style.make_scenes(tmp_path / 'b', count=6, blank=2, seed=17)
    first, second = read_scenes(tmp_path / 'a'), read_scenes(tmp_path / 'b')
    assert [s.objects for s in first] == [s.objects for s in second]
    assert all(s.objects for s in first[:6]) and not any(s.objects for s in first[6:])
    for scene in first:
        assert (scene.width, scene.height) == heldout_style.SIZE
        for label, (x0, y0, x1, y1) in scene.objects:
            assert label in TOOLS
            assert 0 <= x0 < x1 <= scene.width and 0 <= y0 < y1 <= scene.height
    pixels, objects = heldout_style.render_scene(np.random.default_rng(3), 1)
    (label, (x0, y0, x1, y1)), = objects
    inside = pixels[y0:y1, x0:x1].reshape(-1, 3).std(axis=0).mean()
    assert inside > 5  # the tool stands out from the bench inside its box
