"""
clip_perception: zero-shot CLIP detection for ROS 2.

Three rooms, imports only downward (a test enforces it):

- ``engine``: what detection needs at run time: model loading, prompts and the
  text cache, device preprocessing, localization (sliding windows), scoring,
  boxes. No rclpy, no training code.
- ``ros``: the node and what only it needs: parameters, message and image
  conversion, diagnostics, rosbag2 helpers. Imports the engine only.
- ``tools``: offline work on a model: synthetic data, training, box-regressor
  fitting, evaluation, the demo. May import both.

The modules ``eval``, ``train``, ``make_dataset``, ``fit_boxes`` and ``demo``
at this level only give the tools their stable ``python -m`` names.
"""
__version__ = '0.1.0'
