"""
The demo: the node with the bundled demo model, fed by the bundled bag in a loop.

    ros2 launch clip_perception demo.launch.py

Then watch /clip_perception/debug_image (rviz2, Foxglove) or /detections. The
player needs rosbags (pip install rosbags). Synthetic scenes only: real cameras
need real CLIP weights and workbench.launch.py.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import LifecycleNode, Node
from launch_ros.parameter_descriptions import ParameterValue
from launch_ros.substitutions import FindPackageShare

PACKAGE = 'clip_perception'
TOPIC = 'camera/image_raw'
# Both processes get the large-image profile: 320x240 frames fit the default shared
# memory segment, the debug images of larger frames would not.
PROFILE_ENV = {'FASTDDS_DEFAULT_PROFILES_FILE': PathJoinSubstitution(
    [FindPackageShare(PACKAGE), 'config', 'fastdds_large_images.xml'])}


def generate_launch_description():
    return LaunchDescription([
        DeclareLaunchArgument('rate_hz', default_value='2.0',
                              description='frames per second the bag is played at'),
        LifecycleNode(
            package=PACKAGE, executable='clip_perception_node', name='clip_perception',
            namespace='',
            # demo.yaml names the model relative to the package share: it resolves there
            parameters=[PathJoinSubstitution([FindPackageShare(PACKAGE), 'config',
                                              'demo.yaml'])],
            remappings=[('image', TOPIC)], additional_env=PROFILE_ENV, output='screen'),
        Node(
            package=PACKAGE, executable='clip_perception_bag_player', name='bag_player',
            parameters=[{'rate_hz': ParameterValue(LaunchConfiguration('rate_hz'),
                                                   value_type=float)}],
            remappings=[('image', TOPIC)], additional_env=PROFILE_ENV, output='screen'),
    ])
