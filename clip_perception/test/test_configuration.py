"""
One configuration source.

Declared parameters, config/workbench.yaml, the README table and the launch
file agree.
"""
import ast
from pathlib import Path
import re

from clip_perception.engine.prompts import DEFAULT_LABELS
from clip_perception.ros.parameters import (BY_NAME, PARAMETERS, read_parameters_file,
                                            settings_from_file)
from clip_perception.tools.assets import DEMO_MODEL, DEMO_PARAMS
from clip_perception.tools.make_dataset import BACKGROUND_CAPTIONS, TOOL_CAPTIONS
import pytest
from repository import needs_repository, REPO
import yaml

ROOT = Path(__file__).resolve().parents[1]  # this ROS package
LAUNCH_FILE = ROOT / 'launch' / 'workbench.launch.py'
LAUNCH_ARGUMENTS = {'image_topic': 'camera/image_raw', 'params_file': None, 'model': '',
                    'device': '', 'localizer': '',
                    'namespace': '', 'autostart': 'true', 'use_sim_time': 'false',
                    'fastdds_profile': None}


def yaml_type(value) -> str:
    """Return the ROS parameter type a YAML value is read as."""
    if isinstance(value, bool):
        return 'bool'
    if isinstance(value, int):
        return 'integer'
    if isinstance(value, float):
        return 'double'
    if isinstance(value, str):
        return 'string'
    item = {yaml_type(v) for v in value}
    assert len(item) == 1, value
    return f'{item.pop()}_array'


def readme_value(value) -> str:
    if isinstance(value, bool):
        return 'true' if value else 'false'
    if isinstance(value, list):
        return '[' + ', '.join(readme_value(v) for v in value) + ']'
    return str(value)


def test_the_yaml_sets_declared_parameters_to_their_defaults():
    document = yaml.safe_load((ROOT / 'config' / 'workbench.yaml').read_text())
    values = document['/**']['ros__parameters']
    empty_by_default = {s.name for s in PARAMETERS if s.default == []}
    assert set(values) == set(BY_NAME) - empty_by_default
    for name, value in values.items():
        assert yaml_type(value) == BY_NAME[name].kind, name
        assert value == BY_NAME[name].default, f'{name}: the file and the declared default differ'
        if BY_NAME[name].choices:
            assert value in BY_NAME[name].choices, name
        if BY_NAME[name].limits:
            low, high = BY_NAME[name].limits
            assert low <= value <= high, name


@needs_repository
def test_the_readme_table_lists_every_parameter_with_type_default_and_mutability():
    text = (REPO / 'README.md').read_text()
    rows = re.findall(r'^\| `(\w+)` \| (\w+) \| `([^`]*)` \| (restart|yes) \|', text, re.M)
    table = {name: (kind, default, runtime) for name, kind, default, runtime in rows}
    assert set(table) == set(BY_NAME)
    for spec in PARAMETERS:
        kind, default, runtime = table[spec.name]
        assert kind == spec.kind, spec.name
        assert default == readme_value(spec.default), spec.name
        assert runtime == ('restart' if spec.read_only else 'yes'), spec.name


def _launch_arguments_from_source(path: Path = LAUNCH_FILE) -> dict:
    """
    Read a launch file's arguments and defaults without importing launch.

    DeclareLaunchArgument('name', default_value=...) calls, and an ARGUMENTS table
    {name: (default, description)} that the file declares them from.
    """
    found = {}
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Assign) and [getattr(t, 'id', '') for t in node.targets] == [
                'ARGUMENTS']:
            found.update({name: default for name, (default, _) in
                          ast.literal_eval(node.value).items()})
        elif (isinstance(node, ast.Call) and getattr(node.func, 'id', '') ==
              'DeclareLaunchArgument' and isinstance(node.args[0], ast.Constant)):
            default = next(k.value for k in node.keywords if k.arg == 'default_value')
            found[node.args[0].value] = default.value if isinstance(default, ast.Constant) \
                else None
    return found


@needs_repository
def test_launch_file_declares_the_documented_arguments():
    assert _launch_arguments_from_source() == LAUNCH_ARGUMENTS
    assert _launch_arguments_from_source(ROOT / 'launch' / 'demo.launch.py') == {
        'rate_hz': '2.0'}
    assert 'ros2 launch clip_perception demo.launch.py' in (REPO / 'README.md').read_text()
    text = (REPO / 'docs' / 'node.md').read_text()  # the README links it
    for name in LAUNCH_ARGUMENTS:
        assert f'| `{name}` |' in text, name


def test_launch_file_starts_the_node_with_the_package_config():
    pytest.importorskip('launch_ros', reason='launch_ros is not installed (no ROS 2 install)')
    from launch.launch_description_sources import get_launch_description_from_python_launch_file
    description = get_launch_description_from_python_launch_file(str(LAUNCH_FILE))
    arguments = {a.name: a for a in description.get_launch_arguments()}
    assert set(arguments) == set(LAUNCH_ARGUMENTS)


def test_the_demo_configuration_matches_how_the_demo_model_was_trained():
    """
    Check the demo's prompts against the captions the model was trained on.

    The demo's windows are read from config/demo.yaml by the data writer.
    """
    values = read_parameters_file(DEMO_PARAMS)
    assert set(values) <= set(BY_NAME)
    for name, value in values.items():
        assert yaml_type(value) == BY_NAME[name].kind, name
    settings = settings_from_file(DEMO_PARAMS)
    assert set(settings.prompt_templates) <= set(TOOL_CAPTIONS)
    assert settings.background_prompts == BACKGROUND_CAPTIONS
    assert settings.labels == DEFAULT_LABELS
    assert (ROOT / values['model']).resolve() == DEMO_MODEL.resolve()
    assert (DEMO_MODEL / 'model.safetensors').is_file()


@needs_repository
def test_each_demo_localizer_has_a_parameter_file_naming_its_model_that_make_evaluates():
    """config/demo_<NAME>.yaml per localizer of make eval-localizers (windows: demo.yaml)."""
    makefile = (REPO / 'Makefile').read_text().replace('\\\n', ' ')
    package = re.search(r'^PKG := (\S+)$', makefile, re.MULTILINE).group(1)
    makefile = makefile.replace('$(PKG)', package)
    runs = dict(re.findall(r'--run (\w+) (\S+\.yaml)', makefile))
    assert runs['windows'] == 'clip_perception/config/demo.yaml'
    for name, path in runs.items():
        if name != 'windows':
            assert path == f'clip_perception/config/demo_{name}.yaml'
        values = read_parameters_file(REPO / path)
        assert set(values) <= set(BY_NAME), path
        settings = settings_from_file(REPO / path)
        assert settings.localizer == name, path
        assert (ROOT / values['model'] / 'config.json').is_file(), path
