from glob import glob

from setuptools import find_packages, setup

package_name = 'clip_perception'

setup(
    name=package_name,
    version='0.1.0',
    packages=find_packages(include=[package_name, f'{package_name}.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{package_name}']),
        (f'share/{package_name}', ['package.xml']),
        (f'share/{package_name}/launch', glob('launch/*.launch.py')),
        (f'share/{package_name}/config', glob('config/*.yaml') + glob('config/*.xml')),
        (f'share/{package_name}/models/workbench_demo', glob('models/workbench_demo/*')),
        (f'share/{package_name}/models/owl_demo', glob('models/owl_demo/*')),
        (f'share/{package_name}/demo/workbench_bag', glob('demo/workbench_bag/*')),
        (f'share/{package_name}/demo', glob('demo/*.json')),
    ],
    install_requires=['setuptools'],
    zip_safe=True,
    maintainer='clip_perception maintainers',
    maintainer_email='maintainers@clip-perception.invalid',
    description='Zero-shot CLIP object detection node for ROS 2 (vision_msgs output).',
    license='Apache-2.0',
    extras_require={'test': ['pytest', 'pytest-timeout']},
    entry_points={
        'console_scripts': [
            f'clip_perception_node = {package_name}.ros.executable:main',
            f'clip_perception_bag_player = {package_name}.tools.bag_player:main',
        ],
    },
)
