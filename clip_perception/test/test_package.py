"""The ROS package itself: metadata, colcon install layout, README commands."""
from pathlib import Path
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest

ROOT = Path(__file__).resolve().parents[1]  # this ROS package
REPO = ROOT.parent  # the repository: its other packages, Makefile, README, CI


def test_package_xml_declares_the_runtime_dependencies():
    root = ET.parse(ROOT / 'package.xml').getroot()
    assert root.get('format') == '3'
    assert root.findtext('name') == 'clip_perception'
    assert root.find('export/build_type').text == 'ament_python'
    depends = {e.text for e in root if e.tag in ('depend', 'exec_depend')}
    for required in ('rclpy', 'sensor_msgs', 'std_msgs', 'vision_msgs', 'diagnostic_msgs',
                     'python3-numpy', 'python3-opencv'):
        assert required in depends, required


@pytest.mark.slow
def test_colcon_build_installs_the_ros_layout(tmp_path):
    """What `ros2 run` and `ros2 launch` look for after `colcon build`."""
    result = subprocess.run(
        [sys.executable, '-m', 'colcon', '--log-base', str(tmp_path / 'log'), 'build',
         '--paths', str(ROOT), '--build-base', str(tmp_path / 'build'),
         '--install-base', str(tmp_path / 'install')],
        cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = tmp_path / 'install' / 'clip_perception'
    share = prefix / 'share' / 'clip_perception'
    for path in (share / 'package.xml', share / 'launch' / 'workbench.launch.py',
                 share / 'launch' / 'demo.launch.py', share / 'config' / 'workbench.yaml',
                 share / 'config' / 'demo.yaml', share / 'config' / 'fastdds_large_images.xml',
                 share / 'models' / 'workbench_demo' / 'model.safetensors',
                 share / 'models' / 'owl_demo' / 'model.safetensors',
                 share / 'config' / 'demo_owlvit.yaml',
                 share / 'demo' / 'workbench_bag' / 'metadata.yaml',
                 prefix / 'lib' / 'clip_perception' / 'clip_perception_bag_player',
                 prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' /
                 'clip_perception',
                 prefix / 'lib' / 'clip_perception' / 'clip_perception_node'):
        assert path.is_file(), f'{path.relative_to(tmp_path)} not installed'


def _readme_commands() -> set[str]:
    text = (REPO / 'README.md').read_text()
    return set(re.findall(r'^(make \w+)', text, re.MULTILINE))


def test_readme_commands_are_what_ci_and_make_run():
    commands = _readme_commands()
    assert {'make demo', 'make test'} <= commands
    ci = (REPO / '.ci' / 'run').read_text()
    assert re.search(r'^make test$', ci, re.MULTILINE), '.ci/run must call the README test command'
    targets = set(re.findall(r'^([a-z][\w-]*):', (REPO / 'Makefile').read_text(), re.MULTILINE))
    for command in commands:
        assert command.split()[1] in targets, f'README names `{command}`, Makefile lacks it'


def test_model_references_resolve_to_installed_package_files(tmp_path, monkeypatch):
    from clip_perception.ros.package_files import resolve_model
    demo = ROOT / 'models' / 'workbench_demo'
    assert Path(resolve_model('package://clip_perception/models/workbench_demo')) == demo
    monkeypatch.chdir(tmp_path)  # a relative path that is not here is looked up in the share
    assert Path(resolve_model('models/workbench_demo')) == demo
    (tmp_path / 'models' / 'workbench_demo').mkdir(parents=True)  # one here wins
    assert resolve_model('models/workbench_demo') == 'models/workbench_demo'
    assert resolve_model('openai/clip-vit-base-patch32') == 'openai/clip-vit-base-patch32'
    with pytest.raises(ValueError, match="package 'no_such_package' is not installed"):
        resolve_model('package://no_such_package/model')
