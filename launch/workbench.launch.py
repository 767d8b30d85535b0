"""
Start clip_perception on a workbench camera.

    ros2 launch clip_perception workbench.launch.py image_topic:=/camera/image_raw

`model` and `device` override the parameters file only when given (empty = keep
the file's value). The node is a lifecycle node: with `autostart:=false` it waits
for a lifecycle manager (`ros2 lifecycle set /clip_perception configure`).
A relative `image_topic` lies in `namespace`.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'clip_perception'


def _clip_perception_node(context):
    overrides = {}
    for name in ('model', 'device'):
        value = LaunchConfiguration(name).perform(context)
        if value:
            overrides[name] = value
    for name in ('use_sim_time', 'autostart'):
        overrides[name] = LaunchConfiguration(name).perform(context).lower() in ('true', '1')
    # No emulate_tty: it would write colour codes into the launch log files.
    return [LifecycleNode(
        package=PACKAGE,
        executable='clip_perception_node',
        name='clip_perception',
        namespace=LaunchConfiguration('namespace'),
        parameters=[LaunchConfiguration('params_file'), overrides],
        remappings=[('image', LaunchConfiguration('image_topic'))],
        output='screen',
    )]


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument(
            'image_topic', default_value='camera/image_raw',
            description='sensor_msgs/Image topic to detect objects in (remaps `image`; '
                        'relative: in `namespace`)'),
        DeclareLaunchArgument(
            'params_file',
            default_value=PathJoinSubstitution(
                [FindPackageShare(PACKAGE), 'config', 'workbench.yaml']),
            description='YAML file with the node parameters'),
        DeclareLaunchArgument(
            'model', default_value='',
            description='Hugging Face id or local directory of a CLIP model '
                        '(empty: the parameters file decides)'),
        DeclareLaunchArgument(
            'device', default_value='',
            description='auto, cpu, cuda or cuda:N (empty: the parameters file decides)'),
        DeclareLaunchArgument(
            'namespace', default_value='',
            description='Namespace of the node and its relative topics'),
        DeclareLaunchArgument(
            'autostart', default_value='true',
            description='Configure and activate at start-up (false: wait for a lifecycle '
                        'manager)'),
        DeclareLaunchArgument(
            'use_sim_time', default_value='false',
            description='Use /clock (true when replaying a bag with --clock)'),
        OpaqueFunction(function=_clip_perception_node),
    ])
