"""
The `clip_perception_node` executable (what `ros2 run` and launch files start).

Loading the node's modules (torch, transformers) takes seconds; a SIGINT or
SIGTERM in that time ends the process quietly with exit code 0 instead of a
KeyboardInterrupt traceback. From rclpy.init on, rclpy handles the signals
(see run_node.main).
"""
import os
from pathlib import Path
import shutil
import signal
import sys

EXECUTABLE = 'clip_perception_node'


def _exit_quietly(signum, frame):
    # At once, not by raising SystemExit: an exception raised wherever the signal lands
    # can leave a half-imported module (numpy's lazy attributes then recurse without
    # end). Nothing has started yet that needs stopping.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


USAGE = f"""usage: {EXECUTABLE} [-h] [--ros-args [--params-file FILE] [-p NAME:=VALUE]...
                            [-r FROM:=TO]...]

The clip_perception node: CLIP zero-shot detection on camera images, published as
vision_msgs. Usually started by

    ros2 launch clip_perception workbench.launch.py image_topic:=/camera/image_raw
        [params_file:=FILE] [model:=DIR_OR_HUB_ID] [device:=auto|cpu|cuda]
        [localizer:=windows|dense|gradcam|owlvit] [namespace:=NS] [autostart:=true|false]

or
    ros2 run clip_perception {EXECUTABLE} --ros-args \\
        --params-file config/workbench.yaml -r image:=/camera/image_raw

Parameters (name, type, default; * needs a restart):
"""


def usage() -> str:
    """Return the usage text: how to start the node, and every parameter with its default."""
    from clip_perception.ros.parameters import PARAMETERS  # no rclpy, no torch: quick
    rows = []
    for spec in PARAMETERS:
        default = spec.default if spec.default != [] else '[]'
        rows.append(f'  {spec.name}{"*" if spec.read_only else ""} ({spec.kind}, {default}): '
                    f'{spec.description}')
    return USAGE + '\n'.join(rows) + '\n'


def main(args=None) -> int:
    argv = sys.argv[1:] if args is None else list(args)
    if {'-h', '--help'} & set(argv):  # before any ROS or torch import: help is immediate
        print(usage(), end='')
        return 0
    for stop_signal in (signal.SIGINT, signal.SIGTERM):
        signal.signal(stop_signal, _exit_quietly)
    from clip_perception.ros.run_node import main as run_node
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return run_node(args)


def node_command() -> list[str]:
    """Return the command that starts the node as a process (see installed_command)."""
    return installed_command(EXECUTABLE, 'clip_perception.ros.executable')


def installed_command(executable: str, module: str) -> list[str]:
    """
    Return the command that runs one of this package's executables.

    The installed one where `ros2 run` finds it (lib/clip_perception of the ament
    index), else the one beside this Python (a virtual environment) or on PATH,
    else this Python running `module`.
    """
    candidates = []
    try:
        from ament_index_python.packages import get_package_prefix
        candidates.append(Path(get_package_prefix('clip_perception')) / 'lib' /
                          'clip_perception' / executable)
    except (ImportError, LookupError, OSError, ValueError):  # not in the ament index
        pass
    candidates.append(Path(sys.executable).with_name(executable))
    on_path = shutil.which(executable)
    candidates += [Path(on_path)] if on_path else []
    found = next((str(path) for path in candidates if path.is_file()), None)
    return [found] if found else [sys.executable, '-m', module]


if __name__ == '__main__':
    sys.exit(main())
