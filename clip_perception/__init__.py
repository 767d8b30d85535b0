"""clip_perception: zero-shot CLIP detection for ROS 2.

The core modules (everything except ``node``) never import rclpy.
"""
__version__ = '0.1.0'
