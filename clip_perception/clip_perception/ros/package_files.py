"""
Files of installed ROS packages: package:// references and this package's share.

A model can be named as `package://<package>/<path>` (found through the ament
index, like a URDF's meshes), as a path relative to the working directory, or
as a path relative to this package's share directory (what the installed
config/demo.yaml uses), besides a Hugging Face id.
"""
from pathlib import Path

PACKAGE = 'clip_perception'
_SOURCE_ROOT = Path(__file__).resolve().parents[2]


def share_directory(package: str = PACKAGE) -> Path | None:
    """
    Find share/<package> of an installed package through the ament index (None if unknown).

    For this package in a source checkout (not installed) it is the checkout itself.
    """
    try:
        from ament_index_python.packages import get_package_share_directory
        return Path(get_package_share_directory(package))
    except (ImportError, LookupError, OSError, ValueError):  # OSError: no AMENT_PREFIX_PATH
        if package == PACKAGE and (_SOURCE_ROOT / 'package.xml').is_file():
            return _SOURCE_ROOT
        return None


def package_path(relative: str) -> Path:
    """Find a file of this package: in the source checkout when it is there, else the share."""
    source = _SOURCE_ROOT / relative
    if source.exists():
        return source
    share = share_directory()
    return share / relative if share else source


def resolve_model(reference: str) -> str:
    """
    Turn a `model` parameter into what load_clip takes: a directory or a hub id.

    `package://pkg/path` becomes share/pkg/path (ValueError when pkg is not
    installed); a relative path that does not exist from the working directory but
    does in this package's share becomes that; anything else (absolute paths, hub
    ids) is returned as given.
    """
    if reference.startswith('package://'):
        package, _, relative = reference.removeprefix('package://').partition('/')
        share = share_directory(package)
        if share is None:
            raise ValueError(f'model {reference!r}: package {package!r} is not installed '
                             '(not in the ament index)')
        return str(share / relative)
    path = Path(reference).expanduser()
    share = share_directory()
    if not path.is_absolute() and not path.exists() and share and (share / path).exists():
        return str(share / path)
    return reference
