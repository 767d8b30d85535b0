"""
Where the tests are: the package folder alone (`colcon test`), or the whole repository.

`colcon test` may run on a workspace that holds only the package folders (how
packages are usually vendored into src/). Tests of what lives beside them in the
repository (README.md, Makefile, .ci/run, ros_deps/, bench/) skip there with
`needs_repository`, and run wherever the repository is (`make test`, CI).
"""
from pathlib import Path

import pytest

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
REPO = PACKAGE_ROOT.parent
IN_REPOSITORY = all((REPO / name).exists() for name in ('README.md', 'Makefile', '.ci', 'bench'))
needs_repository = pytest.mark.skipif(
    not IN_REPOSITORY, reason='tests the repository around the package folders (README.md, '
    'Makefile, .ci/run, bench/): only the package folders are here')
