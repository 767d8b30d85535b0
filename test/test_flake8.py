"""Code style, as ROS packages check it (ament_flake8's configuration)."""
from pathlib import Path

import pytest

ament_flake8 = pytest.importorskip('ament_flake8.main', reason='ament_flake8 is not installed')

ROOT = Path(__file__).resolve().parents[1]
# Every Python file of the package: the code, its tests, launch files, benchmarks.
PATHS = ['clip_perception', 'test', 'launch', 'bench', 'setup.py']


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8():
    rc, errors = ament_flake8.main_with_errors(argv=[str(ROOT / p) for p in PATHS])
    assert rc == 0, f'Found {len(errors)} code style errors / warnings:\n' + '\n'.join(errors)
