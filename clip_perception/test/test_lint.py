"""Code and docstring style, as ROS packages check them (ament_flake8, ament_pep257)."""
from pathlib import Path
import subprocess
import sys

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Every Python file of the package: the code, its tests, launch files; and the
# repository's benchmarks beside it when this is a checkout.
PACKAGE_PATHS = [ROOT / name for name in ('clip_perception', 'test', 'launch', 'setup.py')]
PATHS = [str(path) for path in (*PACKAGE_PATHS, ROOT.parent / 'bench') if path.exists()]


@pytest.mark.flake8
@pytest.mark.linter
def test_flake8():
    pytest.importorskip('ament_flake8.main', reason='ament_flake8 not installed')
    # Its own process: flake8 forks workers, and this one may have run rclpy and torch.
    result = subprocess.run(
        [sys.executable, '-c', 'import sys; from ament_flake8.main import main; sys.exit(main())',
         *PATHS], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.linter
@pytest.mark.pep257
def test_pep257():
    ament_pep257 = pytest.importorskip('ament_pep257.main', reason='ament_pep257 not installed')
    assert ament_pep257.main(argv=PATHS) == 0, 'Found docstring style errors (printed above)'
