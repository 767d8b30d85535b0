"""
The ROS 2 adapter: the node and what only it needs. Imports the engine, never the tools.

Only ``node`` imports rclpy; the other modules can be read without a ROS graph
(``parameters`` is the one parameter table the tools read parameter files with).
"""
