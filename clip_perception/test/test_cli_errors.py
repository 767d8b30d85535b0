"""The offline commands on bad input: one line naming what is wrong, exit code 2."""
import shutil

from clip_perception.ros.rosbag_io import BagFrame, write_image_bag
from clip_perception.tools import evaluate, search
from clip_perception.tools.assets import DEMO_BAG, DEMO_MODEL, DEMO_PARAMS
from colour_encoder import colour_scene
import numpy as np
import pytest


@pytest.fixture
def bad_files(tmp_path):
    """Make a folder of things that are not what they should be."""
    (tmp_path / 'empty').mkdir()
    corrupt = tmp_path / 'corrupt'
    shutil.copytree(DEMO_BAG, corrupt)
    for db in corrupt.glob('*.db3'):
        db.write_bytes(db.read_bytes()[:3000])
    (tmp_path / 'labels_string.yaml').write_text(
        '/**:\n  ros__parameters:\n    labels: hammer\n')
    (tmp_path / 'broken.yaml').write_text('/**:\n  ros__parameters:\n    labels: [hammer\n')
    (tmp_path / 'scenes_bad').mkdir()
    (tmp_path / 'scenes_bad' / 'annotations.json').write_text('{"images": 3}')
    (tmp_path / 'scenes_broken_image').mkdir()
    (tmp_path / 'scenes_broken_image' / 'annotations.json').write_text(
        '{"images": [{"id": 1, "file_name": "a.png", "width": 4, "height": 4}], '
        '"annotations": [], "categories": []}')
    (tmp_path / 'scenes_broken_image' / 'a.png').write_bytes(b'\x89PNG not really')
    return tmp_path


@pytest.mark.parametrize('arguments,message', [
    (['{tmp}/missing', 'hammer'], 'no rosbag2 at {tmp}/missing'),
    (['{tmp}/empty', 'hammer'], 'cannot read the rosbag2 at {tmp}/empty'),
    (['{tmp}/corrupt', 'hammer'], 'database disk image is malformed'),
    ([str(DEMO_BAG), 'hammer', '--params', '{tmp}/labels_string.yaml'],
     "labels must be a list of strings, got 'hammer'"),
    ([str(DEMO_BAG), 'hammer', '--params', '{tmp}/broken.yaml'], 'is not valid YAML (line 4)'),
    ([str(DEMO_BAG), 'hammer', '--params', '{tmp}/none.yaml'],
     'cannot read parameters file {tmp}/none.yaml: No such file or directory'),
    ([str(DEMO_BAG), 'hammer', '--model', '{tmp}/no_model'], '{tmp}/no_model'),
])
def test_search_names_what_is_wrong_in_one_line(bad_files, capsys, arguments, message):
    argv = [a.format(tmp=bad_files) for a in arguments]
    assert search.main(argv) == 2
    err = capsys.readouterr().err
    assert message.format(tmp=bad_files) in err and 'Traceback' not in err
    assert len(err.strip().splitlines()) == 1, err


def test_search_leaves_out_a_bad_image_and_writes_the_sheet_into_a_new_folder(
        tmp_path, capsys):
    bag = write_image_bag(tmp_path / 'bag', [
        BagFrame(colour_scene(), 1_000_000_000),
        BagFrame(np.zeros((1, 100_000, 3), np.uint8), 2_000_000_000),  # no window fits it
        BagFrame(colour_scene(), 3_000_000_000)])
    sheet = tmp_path / 'new' / 'folder' / 'sheet.png'
    assert search.main([str(bag), 'hammer', '--top', '2', '--sheet', str(sheet)]) == 0
    captured = capsys.readouterr()
    assert '1 image(s) left out: a 100000×1 frame would need' in captured.err
    assert '2 frames,' in captured.out and sheet.is_file()


@pytest.mark.parametrize('folder,message', [
    ('missing', 'no folder at {tmp}/missing'),
    ('empty', 'no annotations.json in {tmp}/empty'),
    ('scenes_bad', "not a COCO annotation file (KeyError: 'categories')"),
    ('scenes_broken_image', 'cannot decode image {tmp}/scenes_broken_image/a.png'),
])
def test_the_evaluator_names_what_is_wrong_in_one_line(bad_files, capsys, folder, message):
    argv = ['--model', str(DEMO_MODEL), '--params', str(DEMO_PARAMS),
            '--scenes', str(bad_files / folder)]
    assert evaluate.main(argv) == 2
    err = capsys.readouterr().err
    assert message.format(tmp=bad_files) in err and 'Traceback' not in err
