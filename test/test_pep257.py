"""Docstring style, as ROS packages check it (ament_pep257's convention)."""
from pathlib import Path

import pytest

ament_pep257 = pytest.importorskip('ament_pep257.main', reason='ament_pep257 is not installed')

ROOT = Path(__file__).resolve().parents[1]
PATHS = ['clip_perception', 'test', 'launch', 'bench', 'setup.py']


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257():
    rc = ament_pep257.main(argv=[str(ROOT / p) for p in PATHS])
    assert rc == 0, 'Found code style errors / warnings'
