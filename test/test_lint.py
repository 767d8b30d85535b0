"""Code and docstring style, as ROS packages check them (ament_flake8, ament_pep257)."""
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Every Python file of the package: the code, its tests, launch files, benchmarks.
PATHS = [str(ROOT / path) for path in ('clip_perception', 'test', 'launch', 'bench', 'setup.py')]


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8():
    ament_flake8 = pytest.importorskip('ament_flake8.main', reason='ament_flake8 not installed')
    rc, errors = ament_flake8.main_with_errors(argv=PATHS)
    assert rc == 0, f'Found {len(errors)} code style errors / warnings:\n' + '\n'.join(errors)


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257():
    ament_pep257 = pytest.importorskip('ament_pep257.main', reason='ament_pep257 not installed')
    assert ament_pep257.main(argv=PATHS) == 0, 'Found docstring style errors (printed above)'
