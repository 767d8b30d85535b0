"""
`python -m clip_perception.index`: folders of bags into Milvus Lite, then searched.

With local workers and on a local Ray cluster, resumed after a stop; then
`search --store` finds the hammer.
"""
import os
import re
import shutil
import subprocess
import sys

from clip_perception.engine.memory import Regions, StoredFrame
from clip_perception.engine.memory_store import MilvusStore, StoreSettings
from clip_perception.engine.model_loading import projection_dim
from clip_perception.ros.rosbag_io import BagFrame, write_image_bag
from clip_perception.tools import index, search
from clip_perception.tools.assets import DEMO_BAG, DEMO_MODEL
from colour_encoder import colour_scene
import numpy as np
import pytest
from test_search import frames_showing
import torch

pytest.importorskip('milvus_lite', reason='milvus-lite is not installed (pip install milvus-lite)')
pytest.importorskip('rosbags', reason='rosbags is not installed (pip install rosbags)')


def small_bag(path, frames=3, shift=0):
    """Write a bag of `frames` grey frames, a red square moving across them."""
    return write_image_bag(path, [
        BagFrame(colour_scene(squares=[('red', 10 + shift + 9 * k, 20, 60 + shift + 9 * k, 80)]),
                 (k + 1) * 10**9) for k in range(frames)])


@pytest.fixture
def archive(tmp_path):
    """Make a folder of two runs on two days: the demo bag and a bag of three frames."""
    root = tmp_path / 'archive'
    shutil.copytree(DEMO_BAG, root / 'monday' / 'workbench')
    small_bag(root / 'tuesday' / 'bench')
    return root


def store_of(tmp_path, name='fleet.db'):
    return f'milvus:{tmp_path / name}'


def ledger(uri):
    store = MilvusStore(StoreSettings(uri, max_rows=0), projection_dim(DEMO_MODEL))
    try:
        return {run: (line['frames'], line['regions'])
                for run, line in store.finished_runs().items()}
    finally:
        store.close()


@pytest.mark.parametrize('arguments,message', [
    (['{tmp}/missing'], 'no bag or folder at {tmp}/missing'),
    (['{tmp}/empty'], 'no rosbag2 (a folder with metadata.yaml) under {tmp}/empty'),
    (['{tmp}/a/bag', '{tmp}/b/bag'], "two bags would both be run 'bag'"),
    (['{tmp}/a/bag', '--store', 'fleet:19530'], 'memory_store must be'),
    (['{tmp}/a/bag', '--workers', '0'], '--workers must be >= 1'),
])
def test_index_names_what_is_wrong_in_one_line(tmp_path, capsys, arguments, message):
    (tmp_path / 'empty').mkdir()
    for folder in ('a', 'b'):
        (tmp_path / folder / 'bag').mkdir(parents=True)
        (tmp_path / folder / 'bag' / 'metadata.yaml').write_text('rosbag2_bagfile_information:')
    argv = [a.format(tmp=tmp_path) for a in arguments]
    if '--store' not in argv:
        argv += ['--store', store_of(tmp_path)]
    try:
        code = index.main(argv)
    except SystemExit as error:  # argparse's own checks
        code = error.code
    assert code == 2
    err = capsys.readouterr().err
    assert message.format(tmp=tmp_path) in err and 'Traceback' not in err


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_workers_index_a_folder_and_search_store_finds_the_hammer(archive, tmp_path,
                                                                      capsys):
    uri = store_of(tmp_path)
    argv = [str(archive), '--store', uri, '--workers', '2', '--robot', 'rover_1']
    assert index.main(argv) == 0
    out = capsys.readouterr().out
    assert '2 bag(s): 0 already indexed, 2 to index with 2 worker(s)' in out
    assert re.search(r'\] archive/monday/workbench: 12 frames, \d+ regions', out), out
    assert re.search(r'\] archive/tuesday/bench: 3 frames, \d+ regions', out), out
    assert 'indexed 2 bag(s), 15 frames' in out
    assert index.main(argv) == 0  # resumed: nothing left to do
    assert '2 bag(s): 2 already indexed, 0 to index' in capsys.readouterr().out
    assert search.main(['--store', uri, 'a hammer', '--top', '3']) == 0
    matches = [line for line in capsys.readouterr().out.splitlines()
               if re.match(r'\d+\. robot', line)]
    assert len(matches) == 3
    first = re.match(r'1\. robot rover_1 run (\S+) stamp (\d+)\.(\d+) ', matches[0])
    assert first and first.group(1) == 'archive/monday/workbench', matches[0]
    assert int(first.group(2)) * 10**9 + int(first.group(3)) in frames_showing('hammer')
    # the robot filter: another robot saw nothing
    assert search.main(['--store', uri, 'a hammer', '--robot', 'rover_2']) == 0
    assert 'no matches' in capsys.readouterr().out


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_bag_left_half_written_is_indexed_again_and_an_unreadable_one_retried(
        tmp_path, capsys):
    root = tmp_path / 'archive'
    small_bag(root / 'good', frames=2)
    broken = small_bag(root / 'broken', frames=2, shift=5)
    for db in broken.glob('*.db3'):
        db.write_bytes(db.read_bytes()[:3000])
    uri = store_of(tmp_path)
    # an indexer stopped midway through 'good': rows, but no line in the ledger
    store = MilvusStore(StoreSettings(uri, max_rows=0), projection_dim(DEMO_MODEL))
    stale = torch.nn.functional.normalize(torch.ones(4, store.dim), dim=-1)
    store.add([(StoredFrame('/camera', 1, 'cam', Regions(np.zeros((4, 4)), stale)), 1)],
              run='archive/good')
    store.close()
    assert index.main([str(root), '--store', uri]) == 1
    captured = capsys.readouterr()
    assert '2 bag(s): 0 already indexed, 2 to index' in captured.out
    assert re.search(r'archive/broken: not indexed: cannot read the rosbag2 at', captured.out)
    assert '1 bag(s) could not be read, not indexed: archive/broken' in captured.err
    regions = int(re.search(r'archive/good: 2 frames, (\d+) regions', captured.out).group(1))
    store = MilvusStore(StoreSettings(uri, max_rows=0), projection_dim(DEMO_MODEL))
    try:  # the stale rows went: exactly what this run found is stored
        assert store.count() == regions and store.runs() == {'archive/good'}
    finally:
        store.close()
    shutil.rmtree(broken)
    small_bag(broken, frames=2, shift=5)  # mended: the next run indexes only it
    assert index.main([str(root), '--store', uri]) == 0
    assert '2 bag(s): 1 already indexed, 1 to index' in capsys.readouterr().out
    assert ledger(uri) == {'archive/good': (2, regions), 'archive/broken': (2, regions)}


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_local_ray_cluster_indexes_what_one_local_worker_indexes(tmp_path):
    root = tmp_path / 'archive'
    for k in range(3):
        small_bag(root / f'run_{k}', frames=2, shift=10 * k)
    env = {**os.environ, 'RAY_USAGE_STATS_ENABLED': '0'}
    outputs = {}
    for name, options in (('ray', ['--ray', 'local', '--workers', '2']),
                          ('local', ['--workers', '1'])):
        # the command as a user runs it, in its own process: Ray starts a cluster there
        done = subprocess.run(
            [sys.executable, '-m', 'clip_perception.index', str(root), '--store',
             store_of(tmp_path, f'{name}.db'), *options], env=env, capture_output=True,
            text=True, timeout=240)
        assert done.returncode == 0, done.stderr[-2000:]
        outputs[name] = done.stdout
    assert '3 to index with 2 worker(s) on Ray' in outputs['ray']
    assert 'indexed 3 bag(s), 6 frames' in outputs['ray']
    on_ray, local = ledger(store_of(tmp_path, 'ray.db')), ledger(store_of(tmp_path, 'local.db'))
    assert set(on_ray) == {'archive/run_0', 'archive/run_1', 'archive/run_2'}
    assert on_ray == local
