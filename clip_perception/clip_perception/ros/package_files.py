"""
Files of installed ROS packages: package:// references and this package's share.

A model can be named as an absolute path, as `package://<package>/<path>`
(found through the ament index, like a URDF's meshes), as a path relative to
this package's share directory (what the installed config/demo.yaml uses) or to
the working directory, or as a Hugging Face id; resolve_model is the one place
that decides, for the node and the offline tools alike.
"""
from pathlib import Path
import re

# What a Hugging Face id looks like: name or owner/name.
_HUB_ID = re.compile(r'^[\w.-]+(/[\w.-]+)?$')

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
    Turn a `model` parameter into the model directory to load, looking in this order.

    An absolute path; `package://pkg/path` (share/pkg/path); a path relative to
    this package's share, then to the working directory; last, a Hugging Face id
    (the local cache, or the hub). ModelLoadError says in one line what was
    looked for where: "no model directory at … (looked in …)", or why the hub
    could not give it.
    """
    # here, not at the top: the bag player and the launch files find files without torch
    from clip_perception.engine.model_loading import ModelLoadError, resolve_model_directory
    reference = reference.strip()
    if not reference:
        raise ModelLoadError('model is empty: give a model directory or a Hugging Face id')
    if reference.startswith('package://'):
        package, _, relative = reference.removeprefix('package://').partition('/')
        share = share_directory(package)
        if share is None:
            raise ModelLoadError(f'model {reference!r}: package {package!r} is not installed '
                                 '(not in the ament index)')
        return _existing_directory(reference, [share / relative])
    path = Path(reference).expanduser()
    if path.is_absolute():
        return _existing_directory(reference, [path])
    share = share_directory()
    places = ([share / path] if share else []) + [Path.cwd() / path]
    found = next((place for place in places if place.is_dir()), None)
    if found is not None:
        return str(found)
    if not _HUB_ID.match(reference):
        return _existing_directory(reference, places)
    try:
        return str(resolve_model_directory(reference))
    except ModelLoadError as error:
        looked = ', '.join(str(place) for place in places)
        raise ModelLoadError(f'{error} (no local model directory either; looked in '
                             f'{looked})') from None


def _existing_directory(reference: str, places: list[Path]) -> str:
    from clip_perception.engine.model_loading import ModelLoadError
    found = next((place for place in places if place.is_dir()), None)
    if found is None:
        looked = ', '.join(str(place) for place in places)
        raise ModelLoadError(f'no model directory at {reference} (looked in {looked})')
    return str(found)
