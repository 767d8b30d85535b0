"""
Start clip_perception on a workbench camera.

    ros2 launch clip_perception workbench.launch.py image_topic:=/camera/image_raw

`model`, `device` and `localizer` override the parameters file only when given
(empty = keep the file's value). The node is a lifecycle node: with `autostart:=false` it waits
for a lifecycle manager (`ros2 lifecycle set /clip_perception configure`).
A relative `image_topic` lies in `namespace`. The node runs with the package's
Fast DDS profile for large images (`fastdds_profile`, see the README's Topics).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'clip_perception'


def _clip_perception_node(context):
    overrides = {}
    for name in ('model', 'device', 'localizer'):
        value = LaunchConfiguration(name).perform(context)
        if value:
            overrides[name] = value
    for name in ('use_sim_time', 'autostart'):
        overrides[name] = LaunchConfiguration(name).perform(context).lower() in ('true', '1')
    profile = LaunchConfiguration('fastdds_profile').perform(context)
    # No emulate_tty: it would write colour codes into the launch log files.
    return [LifecycleNode(
        package=PACKAGE,
        executable='clip_perception_node',
        name='clip_perception',
        namespace=LaunchConfiguration('namespace'),
        parameters=[LaunchConfiguration('params_file'), overrides],
        remappings=[('image', LaunchConfiguration('image_topic'))],
        additional_env={'FASTDDS_DEFAULT_PROFILES_FILE': profile} if profile else None,
        output='screen',
    )]


# The arguments with plain defaults: name -> (default, description).
ARGUMENTS = {
    'image_topic': ('camera/image_raw', 'sensor_msgs/Image topic to detect objects in (remaps '
                                        '`image`; relative: in `namespace`)'),
    'model': ('', 'Hugging Face id or directory of a CLIP model (empty: the parameters file '
                  'decides)'),
    'device': ('', 'auto, cpu, cuda or cuda:N (empty: the parameters file decides)'),
    'localizer': ('', 'windows, dense, gradcam or owlvit (owlvit: give an OWL-ViT/OWLv2 '
                      '`model`; empty: the parameters file decides)'),
    'namespace': ('', 'Namespace of the node and its relative topics'),
    'autostart': ('true', 'Configure and activate at start-up (false: wait for a lifecycle '
                          'manager)'),
    'use_sim_time': ('false', 'Use /clock (true when replaying a bag with --clock)'),
}


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument(
            'params_file',
            default_value=PathJoinSubstitution(
                [FindPackageShare(PACKAGE), 'config', 'workbench.yaml']),
            description='YAML file with the node parameters'),
        DeclareLaunchArgument(
            'fastdds_profile',
            default_value=PathJoinSubstitution(
                [FindPackageShare(PACKAGE), 'config', 'fastdds_large_images.xml']),
            description='Fast DDS profile of the node process (large images over shared '
                        'memory; give the camera driver the same); empty: none'),
        *(DeclareLaunchArgument(name, default_value=default, description=description)
          for name, (default, description) in ARGUMENTS.items()),
        OpaqueFunction(function=_clip_perception_node),
    ])
