"""The ROS package itself: metadata, colcon install layout, README commands."""
import os
from pathlib import Path
import re
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
from repository import needs_repository, REPO

ROOT = Path(__file__).resolve().parents[1]  # this ROS package


def test_package_xml_declares_the_runtime_dependencies():
    root = ET.parse(ROOT / 'package.xml').getroot()
    assert root.get('format') == '3'
    assert root.findtext('name') == 'clip_perception'
    assert root.find('export/build_type').text == 'ament_python'
    depends = {e.text for e in root if e.tag in ('depend', 'exec_depend')}
    for required in ('rclpy', 'sensor_msgs', 'std_msgs', 'vision_msgs', 'diagnostic_msgs',
                     'clip_perception_interfaces', 'python3-numpy', 'python3-opencv'):
        assert required in depends, required


def test_colcon_finds_one_package_per_folder_of_the_repository(tmp_path):
    """A clone in a workspace's src/: both packages, ros_deps/ and .venv ignored."""
    result = subprocess.run(
        [sys.executable, '-m', 'colcon', '--log-base', str(tmp_path / 'log'), 'list',
         '--base-paths', str(REPO)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    found = {tuple(line.split('\t')[::2]) for line in result.stdout.splitlines()}
    assert found == {('clip_perception', '(ros.ament_python)'),
                     ('clip_perception_interfaces', '(ros.ament_cmake)')}


def test_the_interface_package_is_a_rosidl_package_that_make_setup_built():
    interfaces = REPO / 'clip_perception_interfaces'
    root = ET.parse(interfaces / 'package.xml').getroot()
    assert root.get('format') == '3'
    assert root.find('export/build_type').text == 'ament_cmake'
    assert root.findtext('member_of_group') == 'rosidl_interface_packages'
    assert 'rosidl_default_generators' in {e.text for e in root.iter('buildtool_depend')}
    assert {'vision_msgs', 'sensor_msgs'} <= {e.text for e in root.iter('depend')}
    cmake = (interfaces / 'CMakeLists.txt').read_text()
    for name in ('msg/Match.msg', 'srv/Detect.srv', 'srv/Find.srv'):
        assert (interfaces / name).is_file() and name in cmake
    # What `make setup` built into the environment (or a ROS install provides): the
    # generated types, not the source folder (which imports as a namespace package).
    from clip_perception_interfaces.srv import Detect, Find
    assert Path(sys.modules[Detect.__module__].__file__).resolve().parents[2] != REPO
    assert Detect.Response().detections.__class__.__name__ == 'Detection2DArray'
    assert Find.Request().start.__class__.__module__.startswith('builtin_interfaces')


@pytest.mark.slow
@needs_repository  # ros_deps/ros_wheels.cmake, for machines without a ROS install
def test_colcon_builds_the_interface_package(tmp_path):
    """`colcon build` of the ament_cmake package (here against the ROS 2 wheels)."""
    cmake_args = []
    if 'ROS_DISTRO' not in os.environ:  # no sourced ROS install: the wheels' workarounds
        cmake_args = ['--cmake-args', f'-DROS_WHEELS_CMAKE={REPO}/ros_deps/ros_wheels.cmake',
                      f'-DPython3_EXECUTABLE={sys.executable}']
    result = subprocess.run(
        [sys.executable, '-m', 'colcon', '--log-base', str(tmp_path / 'log'), 'build',
         '--base-paths', str(REPO), '--packages-select', 'clip_perception_interfaces',
         '--build-base', str(tmp_path / 'build'), '--install-base', str(tmp_path / 'install'),
         *cmake_args], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    prefix = tmp_path / 'install' / 'clip_perception_interfaces'
    for path in ('share/clip_perception_interfaces/srv/Detect.srv',
                 'share/clip_perception_interfaces/srv/Find.srv',
                 'share/ament_index/resource_index/packages/clip_perception_interfaces'):
        assert (prefix / path).is_file(), path
    assert list(prefix.glob('lib/python3*/site-packages/clip_perception_interfaces/srv/'
                            '_detect.py'))


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


@needs_repository
def test_readme_commands_are_what_ci_and_make_run():
    commands = _readme_commands()
    assert {'make demo', 'make test'} <= commands
    ci = (REPO / '.ci' / 'run').read_text()
    assert re.search(r'^make test$', ci, re.MULTILINE), '.ci/run must call the README test command'
    targets = set(re.findall(r'^([a-z][\w-]*):', (REPO / 'Makefile').read_text(), re.MULTILINE))
    for command in commands:
        assert command.split()[1] in targets, f'README names `{command}`, Makefile lacks it'


def test_model_references_resolve_in_one_order_for_the_node_and_the_tools(tmp_path,
                                                                          monkeypatch):
    """Absolute, package://, share-relative, cwd-relative, hub id: in that order."""
    from clip_perception.engine.model_loading import ModelLoadError
    from clip_perception.ros.package_files import resolve_model, share_directory
    share = share_directory()  # the installed share, or this checkout when not installed
    demo = share / 'models' / 'workbench_demo'
    assert Path(resolve_model(str(demo))) == demo
    assert Path(resolve_model('package://clip_perception/models/workbench_demo')) == demo
    monkeypatch.chdir(tmp_path)  # a relative path is looked up in the share first
    assert Path(resolve_model('models/workbench_demo')) == demo
    (tmp_path / 'my_models' / 'clip').mkdir(parents=True)  # then in the working directory
    assert Path(resolve_model('my_models/clip')) == tmp_path / 'my_models' / 'clip'
    with pytest.raises(ModelLoadError, match="package 'no_such_package' is not installed"):
        resolve_model('package://no_such_package/model')
    with pytest.raises(ModelLoadError) as missing:
        resolve_model('./models/nothing_here')
    assert str(missing.value) == (
        f'no model directory at ./models/nothing_here (looked in '
        f'{share / "models" / "nothing_here"}, {tmp_path / "models" / "nothing_here"})')
    monkeypatch.setenv('HF_HUB_OFFLINE', '1')  # a hub id without the hub: one line
    with pytest.raises(ModelLoadError) as offline:
        resolve_model('openai/clip-vit-base-patch32')
    text = str(offline.value)
    assert "'openai/clip-vit-base-patch32' is neither a local directory nor in" in text
    assert 'looked in' in text and '\n' not in text
