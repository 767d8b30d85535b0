"""
Every command the README and the Makefile name, run as a user runs it (a quick mode).

A command no test runs breaks unnoticed: `make bench` and `make eval-localizers`
did, in the commit that moved the packages into folders of their own. These run
the make targets from the repository's root, on small sets where a target takes
minutes (the figures in the README come from the defaults).
"""
import os
import re
import subprocess

import pytest
from repository import needs_repository, REPO

pytestmark = [pytest.mark.slow, needs_repository]


def make(*arguments, timeout=900) -> str:
    """Run `make ARGUMENTS` in the repository; its output, or a failure showing it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith('PYTEST')}
    done = subprocess.run(['make', '--no-print-directory', *arguments], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, f'make {" ".join(arguments)}:\n{done.stdout[-4000:]}' \
                                 f'\n{done.stderr[-4000:]}'
    return done.stdout


@pytest.mark.timeout(900)
def test_make_bench_runs_every_benchmark():
    output = make('bench', 'BENCH_ARGS=--quick')
    assert re.search(r'node_overhead_vs_engine: -?\d', output), output
    assert 'engine_vs_seed_loop_speedup:' in output
    assert re.search(r'stop while frames flow at 30 Hz: median \d+\.\d+ s', output)
    assert re.search(r'large frames 1280x720 best effort, packaged profile: \d+ of 10', output)
    assert '| 10,000 | exact |' in output
    # Lite searches exactly (FLAT): the exact answer; the server's HNSW graph nearly
    for store, recall in (('milvus lite', r'1\.000'), ('milvus server', r'0\.[89]\d\d|1\.000')):
        assert re.search(rf'^\| 10,000 \| {store} \| [\d,]+ \| [\d.]+ \| [\d.]+ \| '
                         rf'({recall}) \|', output, re.M), output
    assert re.search(r'^embedded store \(Milvus Lite.*median \d+ ms CPU', output, re.M)
    assert re.search(r'^indexing 2 copies of the demo bag \(\d+ frames\): 1 worker [\d.]+ '
                     r'frames/s, 2 workers [\d.]+ frames/s', output, re.M)


@pytest.mark.timeout(900)
def test_make_eval_and_eval_localizers_on_small_sets(tmp_path):
    sizes = [f'EVAL_DIR={tmp_path}', 'EVAL_SCENES=6', 'EVAL_BLANK=2', 'EVAL_CROPS=40',
             'EVAL_FRAMES=4']
    output = make('eval', *sizes)
    assert re.search(r'^eval own: scene_accuracy: [\d.]+ ap50: [\d.]+ ap50_95: [\d.]+ '
                     r'fp_per_blank: [\d.]+$', output, re.M), output
    assert re.search(r'^eval heldout: scene_accuracy: ', output, re.M)
    assert re.search(r'^tracking: mota: -?[\d.]+ idf1: [\d.]+ id_switches: \d+$', output, re.M)
    output = make('eval-localizers', *sizes)
    for localizer in ('windows', 'dense', 'gradcam', 'owlvit'):
        for style in ('own', 'heldout'):
            assert re.search(rf'^localizer: {localizer} style: {style} scene_accuracy: ',
                             output, re.M), output


@pytest.mark.timeout(600)
def test_make_demo_3d_prints_positions_in_metres(tmp_path):
    output = make('demo-3d', f'DEMO_3D={tmp_path / "bag"}', f'DEMO_3D_OUT={tmp_path / "out"}')
    assert re.search(r'^demo summary: \d+ frames replayed', output, re.M), output
    assert re.search(r"^demo 3d: median distance from a planted tool's true centre", output,
                     re.M), output


@pytest.mark.timeout(400)
def test_make_soak_in_a_short_run_leaves_the_node_answering():
    # 40 s: the warm-up (half of it) sees the second burst of callers, at 15 s
    output = make('soak', 'SOAK_SECONDS=40', timeout=380)
    assert re.search(r'^soak: seconds \d+ .* answered (\d+) .* rss_growth', output, re.M), output


@pytest.mark.timeout(900)
def test_the_training_recipes_run_every_step_on_a_handful_of_examples(tmp_path):
    """`make train-demo-model` and `make train-owl-demo-model` with TRAIN_QUICK=1."""
    model, owl = tmp_path / 'demo_model', tmp_path / 'owl_model'
    make('train-demo-model', 'TRAIN_QUICK=1', f'TRAIN_DIR={tmp_path / "train"}',
         f'DEMO_MODEL={model}')
    assert (model / 'model.safetensors').is_file()
    assert (model / 'box_regressor.safetensors').is_file()
    make('train-owl-demo-model', 'TRAIN_QUICK=1', f'OWL_DIR={tmp_path / "owl"}',
         f'DEMO_MODEL={model}', f'OWL_DEMO_MODEL={owl}')
    assert (owl / 'model.safetensors').is_file()
