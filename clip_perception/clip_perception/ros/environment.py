"""
The environment of a ROS 2 graph kept to this machine: tests, the demo, benchmarks.

The variables are read when rclpy starts a context (and by child processes), so
a program applies them before `rclpy.init`, and only where it chooses to:
this module returns a new mapping and changes nothing.
"""
import os
import sys
from typing import Mapping


def local_graph_environment(domain_id: int | None = None,
                            base: Mapping[str, str] | None = None) -> dict[str, str]:
    """
    Return a copy of `base` (default: os.environ) for a ROS graph on this machine only.

    - ROS_DOMAIN_ID: `domain_id`; without one, the domain already set, else one
      derived from the process id (1..100, distinct UDP port ranges);
    - ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (Kilted ignores ROS_LOCALHOST_ONLY);
    - FASTDDS_BUILTIN_TRANSPORTS=LARGE_DATA unless set: large images arrive whole
      between processes, with either reliability;
    - AMENT_PREFIX_PATH: this Python's prefix when unset (the PyPI ROS wheels set
      none, and ament_index needs it).
    """
    env = dict(os.environ if base is None else base)
    if domain_id is not None:
        env['ROS_DOMAIN_ID'] = str(domain_id)
    else:
        env.setdefault('ROS_DOMAIN_ID', str(1 + os.getpid() % 100))
    env['ROS_AUTOMATIC_DISCOVERY_RANGE'] = 'LOCALHOST'
    env.setdefault('FASTDDS_BUILTIN_TRANSPORTS', 'LARGE_DATA')
    if not env.get('AMENT_PREFIX_PATH'):
        env['AMENT_PREFIX_PATH'] = sys.prefix
    return env


def collected(node, msg_type, topic: str, qos) -> list:
    """Subscribe `node` to `topic` and return the list its messages are appended to."""
    messages = []
    node.create_subscription(msg_type, topic, messages.append, qos)
    return messages
