"""Where the bundled demo assets live: in the source checkout, else in the installed share."""
from clip_perception.ros.package_files import package_path

DEMO_PARAMS = package_path('config/demo.yaml')
DEMO_MODEL = package_path('models/workbench_demo')
DEMO_BAG = package_path('demo/workbench_bag')
