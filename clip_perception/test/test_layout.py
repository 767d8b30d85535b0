"""
The package's three rooms and the imports between them.

engine: never the ROS adapter, the tools or any ROS package; ros: the engine
only; tools: both. The python -m aliases at the top level name a tool each.
Read from the source (every import statement, wherever it stands), and checked
once more by importing: loading the node loads nothing of the tools.
"""
import ast
from pathlib import Path
import subprocess
import sys

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / 'clip_perception'
ROOMS = ('engine', 'ros', 'tools')
# What each room may import from this package.
ALLOWED = {'engine': {'engine'}, 'ros': {'engine', 'ros'}, 'tools': {'engine', 'ros', 'tools'}}
# Top-level packages of ROS 2 itself: only the adapter (and the tools) may use them.
ROS_PACKAGES = {'rclpy', 'rcl_interfaces', 'sensor_msgs', 'std_msgs', 'std_srvs',
                'vision_msgs', 'diagnostic_msgs', 'builtin_interfaces', 'launch',
                'launch_ros', 'ament_index_python', 'rosbags',
                'clip_perception_interfaces'}


def imported_modules(path: Path, package: str = '') -> set[str]:
    """
    List every module an import statement in `path` names.

    Relative imports are resolved against `package` (default: where `path` lies
    in clip_perception).
    """
    tree = ast.parse(path.read_text(), str(path))
    package = package or '.'.join(path.relative_to(PACKAGE.parent).with_suffix('').parts[:-1])
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit('.', node.level - 1)[0] if node.level > 1 else package
                names.add(f'{base}.{node.module}' if node.module else base)
            else:
                names.add(node.module)
    return names


def room_of(module: str) -> str | None:
    """'engine', 'ros' or 'tools' for a clip_perception module; None outside them."""
    parts = module.split('.')
    if parts[0] != 'clip_perception' or len(parts) < 2 or parts[1] not in ROOMS:
        return None
    return parts[1]


def violations(room: str, paths, package: str = '') -> list[str]:
    """List the imports of `paths` (modules of `room`) that break the rule."""
    wrong = []
    for path in paths:
        for module in imported_modules(path, package):
            top = module.split('.')[0]
            if top == 'clip_perception' and room_of(module) not in ALLOWED[room]:
                wrong.append(f'{path.name} imports {module}')
            if room == 'engine' and top in ROS_PACKAGES:
                wrong.append(f'{path.name} imports ROS package {module}')
    return wrong


@pytest.mark.parametrize('room', ROOMS)
def test_each_room_imports_only_the_rooms_below_it(room):
    paths = sorted((PACKAGE / room).rglob('*.py'))
    assert len(paths) > 3
    wrong = violations(room, paths)
    assert not wrong, '\n'.join(wrong)


def test_the_top_level_holds_only_the_rooms_and_the_command_aliases():
    loose = sorted(p.name for p in PACKAGE.glob('*.py') if p.name != '__init__.py')
    assert loose == ['demo.py', 'eval.py', 'fit_boxes.py', 'index.py', 'make_dataset.py',
                     'search.py', 'train.py', 'train_owl.py']
    for name in loose:
        (module,) = {m for m in imported_modules(PACKAGE / name)
                     if m.startswith('clip_perception')}
        assert room_of(module) == 'tools', name
    assert imported_modules(PACKAGE / '__init__.py') == set()


def test_the_checker_sees_imports_that_point_up(tmp_path):
    module = tmp_path / 'upward.py'
    module.write_text('import rclpy\nfrom clip_perception.ros import parameters\n'
                      'from ..tools import demo\nfrom . import prompts\n')
    found = violations('engine', [module], package='clip_perception.engine')
    assert sorted(found) == ['upward.py imports ROS package rclpy',
                             'upward.py imports clip_perception.ros',
                             'upward.py imports clip_perception.tools']
    assert violations('tools', [module], package='clip_perception.tools') == []


@pytest.mark.slow
def test_loading_the_node_loads_no_tool_and_the_engine_loads_no_ros():
    code = ('import sys, clip_perception.ros.run_node; '
            'tools = sorted(m for m in sys.modules if m.startswith("clip_perception.tools")); '
            'sys.exit(str(tools) if tools else 0)')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    code = ('import sys, clip_perception.engine.detector, clip_perception.engine.model_loading; '
            f'ros = sorted(m for m in sys.modules if m.split(".")[0] in {sorted(ROS_PACKAGES)}); '
            'sys.exit(str(ros) if ros else 0)')
    result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_nothing_imports_the_held_out_drawing_style():
    # The held-out style measures generalization only while training never sees it:
    # no module of the package (training, data, the node) may import it; it runs as
    # a command of its own.
    importers = [str(path.relative_to(PACKAGE)) for path in sorted(PACKAGE.rglob('*.py'))
                 if any(m.endswith('heldout_style') or m == 'clip_perception.tools.heldout_style'
                        for m in imported_modules(path))
                 or 'heldout_style' in _imported_names(path)]
    assert importers == []
    assert (PACKAGE / 'tools' / 'heldout_style.py').is_file()


def _imported_names(path: Path) -> set[str]:
    """Names brought in by `from X import name` (a module imported from its package)."""
    tree = ast.parse(path.read_text(), str(path))
    return {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
            for alias in node.names}
