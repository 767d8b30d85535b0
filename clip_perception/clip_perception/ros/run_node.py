"""
Run the node in its process: rclpy, an executor, a clean stop on SIGINT/SIGTERM.

`main` is what the clip_perception_node executable runs (ros/executable.py
imports it once the signals are set up).
"""
import os
import re
import signal
import sys

from clip_perception.ros.node import ClipPerceptionNode
from clip_perception.ros.process_memory import limit_arenas
import rclpy
from rclpy._rclpy_pybind11 import RCLError, UnknownROSArgsError
from rclpy.exceptions import ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor


def rcl_reason(error: Exception) -> str:
    """Return the reason in an rcl error, without the C source locations after it."""
    if isinstance(error, UnknownROSArgsError):  # its text is the list of arguments
        return f'unknown ROS arguments {str(error).strip("[]")}'
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    text = text.removeprefix('failed to initialize rcl: ')
    return re.sub(r'(, at [^,]*\.c:\d+)+$', '', text)


def main(args=None) -> int:
    """
    Run the node; exit 0 on SIGINT/SIGTERM (what `ros2 launch` sends), 1 when it cannot start.

    A stop that finds a frame still in inference after STOP_WAIT_SEC leaves it and
    ends the process at once (os._exit): a thread still inside torch at interpreter
    exit can abort the process.
    """
    limit_arenas()  # before rclpy and the node start their threads
    try:
        rclpy.init(args=args)  # SIGINT and SIGTERM shut the context down: spin returns
    except (RCLError, UnknownROSArgsError) as error:  # a broken parameter file, say
        rclpy.logging.get_logger('clip_perception').fatal(
            f'cannot start: the ROS arguments could not be read: {rcl_reason(error)}')
        return 1
    executor = SingleThreadedExecutor()  # before the node: a signal may come at any time
    node = None
    code, finished = 0, True
    try:
        node = ClipPerceptionNode()
        executor.add_node(node)
        if node.get_parameter('autostart').value and not node.start():
            code = 1 if rclpy.ok() else 0  # not ok: a stop came while it was starting
        else:
            executor.spin()
    except ParameterException as error:  # a start-up value of the wrong type or range
        rclpy.logging.get_logger('clip_perception').fatal(f'cannot start: {error}')
        code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
        # A signal shut the context down while the node was starting: nothing to report.
    finally:
        for stop_signal in (signal.SIGINT, signal.SIGTERM):  # one stop at a time
            signal.signal(stop_signal, signal.SIG_IGN)
        if node is not None:
            finished = node.close()
            if not finished:
                node.get_logger().info('stopped with a frame still in inference: it is left')
            node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown()
    if not finished:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == '__main__':
    sys.exit(main())
