"""
What the offline commands share: one clear line for what a user got wrong.

A missing path, an empty folder, a corrupt bag, a broken parameters file or a
model that cannot be loaded is the user's to fix, not a defect: the command
prints `PROG: error: WHAT` (naming the path or parameter) and exits 2, without a
traceback. Anything else is a defect and keeps its traceback.
"""
import functools
from pathlib import Path
import sys

from clip_perception.engine.detector import DetectorSettings
from clip_perception.engine.model_loading import ModelLoadError
from clip_perception.engine.prompts import PromptError
from clip_perception.ros.parameters import read_parameters_file, settings_from_file
from clip_perception.ros.rosbag_io import BagError
from clip_perception.tools.datasets import DatasetError


class CliError(Exception):
    """A problem with the command's input; the message says what, in one line."""


# Errors of input that every command turns into one line.
USER_ERRORS = (CliError, ModelLoadError, PromptError, BagError, DatasetError)


def one_line_errors(main):
    """Wrap a command's `main(argv)`: USER_ERRORS become `PROG: error: …` and exit code 2."""
    @functools.wraps(main)
    def wrapped(argv=None):
        try:
            return main(argv)
        except USER_ERRORS as error:
            prog = Path(sys.argv[0]).stem if sys.argv and sys.argv[0] else 'clip_perception'
            text = str(error).strip().splitlines()[0] if str(error).strip() else \
                type(error).__name__
            print(f'{prog}: error: {text}', file=sys.stderr)
            return 2
    return wrapped


def existing_path(path: Path, what: str) -> Path:
    """Return `path` when it exists; CliError names it otherwise."""
    if not Path(path).exists():
        raise CliError(f'no {what} at {path}')
    return Path(path)


def read_settings(path: Path) -> tuple[DetectorSettings, dict]:
    """Read a parameters file's DetectorSettings and values; CliError says what is wrong."""
    try:
        return settings_from_file(path), read_parameters_file(path)
    except ValueError as error:
        raise CliError(str(error)) from None


def writable_file(path: Path) -> Path:
    """Make the folder of a file to be written; CliError when that is impossible."""
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise CliError(f'cannot write {path}: {error.strerror or error}') from None
    return Path(path)
