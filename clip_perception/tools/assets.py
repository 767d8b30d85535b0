"""Where the bundled demo assets live: in the source checkout, else in the installed share."""
from pathlib import Path

_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def package_path(relative: str) -> Path:
    """
    Find a file of this package: in the source checkout, else in the install.

    `relative` (e.g. 'config/demo.yaml') in the source checkout when it is there,
    else in share/clip_perception of the install (found through the ament index).
    """
    source = _SOURCE_ROOT / relative
    if source.exists():
        return source
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory('clip_perception')) / relative
    except (ImportError, LookupError):
        return source


DEMO_PARAMS = package_path('config/demo.yaml')
DEMO_MODEL = package_path('models/workbench_demo')
DEMO_BAG = package_path('demo/workbench_bag')
