"""
Offline tools: synthetic data, training, box-regressor fitting, evaluation, the demo.

Nothing the node runs imports them; they may import the engine and the ROS adapter.
"""
