"""
rosbag2 files without rosbag2: write, replay and record them with `rosbags`.

Used by the replay tests and the demo. Replay publishes each message's CDR
bytes as recorded; recording takes raw CDR from the wire. The node itself
never imports this module.
"""
from dataclasses import dataclass
from pathlib import Path
import sqlite3
import sys
import time
from typing import Iterable

import numpy as np

VISION_MSGS_TYPES = ('Point2D', 'Pose2D', 'BoundingBox2D', 'ObjectHypothesis',
                     'ObjectHypothesisWithPose', 'Detection2D', 'Detection2DArray',
                     'Classification', 'VisionClass', 'LabelInfo', 'BoundingBox3D',
                     'BoundingBox3DArray', 'Detection3D', 'Detection3DArray')
# Where write_image_bag puts a frame's depth image and camera info, when it has them.
DEPTH_TOPIC = '/camera/depth/image_raw'
CAMERA_INFO_TOPIC = '/camera/camera_info'


def _vision_msgs_definitions() -> Path:
    """
    Find the .msg files of the installed vision_msgs.

    share/vision_msgs/msg through the ament index, or the Python environment's
    prefix where the PyPI ROS wheels live.
    """
    from ament_index_python.packages import get_package_share_directory
    try:
        return Path(get_package_share_directory('vision_msgs')) / 'msg'
    except (OSError, LookupError):
        return Path(sys.prefix) / 'share' / 'vision_msgs' / 'msg'


def typestore():
    """Return the ROS 2 Kilted typestore of rosbags, plus the installed vision_msgs types."""
    from rosbags.typesys import get_types_from_msg, get_typestore, Stores
    store = get_typestore(Stores.ROS2_KILTED)
    share = _vision_msgs_definitions()
    types = {}
    for name in VISION_MSGS_TYPES:
        types.update(get_types_from_msg((share / f'{name}.msg').read_text(),
                                        f'vision_msgs/msg/{name}'))
    store.register(types)
    return store


@dataclass(frozen=True)
class BagFrame:
    """
    One image for a bag: RGB pixels, header stamp in nanoseconds, frame_id.

    Optionally an aligned depth image ([H, W] metres, written as 16UC1 millimetres)
    and the camera's row-major 3×3 K, written with the same header.
    """

    pixels: np.ndarray
    stamp_ns: int
    frame_id: str = 'camera'
    depth: np.ndarray | None = None
    camera_k: tuple[float, ...] | None = None


def write_image_bag(path: Path, frames: Iterable[BagFrame], topic: str = '/camera/image_raw',
                    storage: str = 'sqlite3') -> Path:
    """Write a rosbag2 (version 9) of sensor_msgs/msg/Image rgb8 frames, receive time = stamp."""
    from rosbags.rosbag2 import StoragePlugin, Writer
    store = typestore()
    Image = store.types['sensor_msgs/msg/Image']
    Header = store.types['std_msgs/msg/Header']
    Time = store.types['builtin_interfaces/msg/Time']
    plugin = StoragePlugin.MCAP if storage == 'mcap' else StoragePlugin.SQLITE3
    with Writer(Path(path), version=9, storage_plugin=plugin) as writer:
        connections = {}

        def write(name, msg):
            if name not in connections:
                connections[name] = writer.add_connection(name, msg.__msgtype__, typestore=store)
            writer.write(connections[name], frame.stamp_ns,
                         store.serialize_cdr(msg, msg.__msgtype__))

        for frame in frames:
            height, width = frame.pixels.shape[:2]
            header = Header(stamp=Time(sec=frame.stamp_ns // 10**9,
                                       nanosec=frame.stamp_ns % 10**9),
                            frame_id=frame.frame_id)
            if frame.depth is not None:  # before the colour frame: a replay finds it there
                millimetres = np.nan_to_num(frame.depth * 1000.0).round().astype('<u2')
                write(DEPTH_TOPIC, Image(header=header, height=height, width=width,
                                         encoding='16UC1', is_bigendian=0, step=width * 2,
                                         data=millimetres.view(np.uint8).reshape(-1)))
            if frame.camera_k is not None:
                CameraInfo = store.types['sensor_msgs/msg/CameraInfo']
                k = np.asarray(frame.camera_k, np.float64)
                write(CAMERA_INFO_TOPIC, CameraInfo(
                    header=header, height=height, width=width, distortion_model='plumb_bob',
                    d=np.zeros(5), k=k, r=np.eye(3).reshape(-1),
                    p=np.concatenate([k.reshape(3, 3), np.zeros((3, 1))], axis=1).reshape(-1),
                    binning_x=0, binning_y=0, roi=store.types['sensor_msgs/msg/RegionOfInterest'](
                        x_offset=0, y_offset=0, height=0, width=0, do_rectify=False)))
            write(topic, Image(header=header, height=height, width=width, encoding='rgb8',
                               is_bigendian=0, step=width * 3,
                               data=np.ascontiguousarray(frame.pixels).reshape(-1)))
    return Path(path)


class BagError(ValueError):
    """A path that is no readable rosbag2 (missing, no metadata, a corrupt database)."""


def read_messages(path: Path, topics: Iterable[str] | None = None):
    """
    (topic, msgtype, receive time ns, raw CDR bytes) of every message, in time order.

    BagError says why a bag cannot be read (also when it breaks off midway).
    """
    from rosbags.rosbag2 import Reader, ReaderError
    try:
        with Reader(Path(path)) as reader:
            connections = [c for c in reader.connections
                           if topics is None or c.topic in topics]
            if not connections:  # rosbags reads every connection when given none
                return
            for connection, timestamp, data in reader.messages(connections=connections):
                yield connection.topic, connection.msgtype, timestamp, bytes(data)
    except (OSError, ReaderError, sqlite3.DatabaseError) as error:
        raise BagError(f'cannot read the rosbag2 at {path}: {error}') from None


def bag_images(path: Path, topic: str | None = None):
    """(topic, sensor_msgs Image) of every colour image of the bag (of `topic` only, if given)."""
    from clip_perception.ros.image_conversion import DEPTH_ENCODINGS
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import Image
    for name, msgtype, _, data in read_messages(path, [topic] if topic else None):
        if msgtype == 'sensor_msgs/msg/Image':
            msg = deserialize_message(data, Image)
            if msg.encoding not in DEPTH_ENCODINGS:  # an aligned depth image is no frame
                yield name, msg


class BagRecorder:
    """
    Records topics of a running ROS graph into a new bag, as raw CDR.

    Subscribes with raw=True on `node`; `close()` writes the bag's metadata.
    """

    def __init__(self, node, path: Path, topics: dict[str, type], qos=10):
        from rosbags.rosbag2 import Writer
        self._store = typestore()
        self._writer = Writer(Path(path), version=9)
        self._writer.open()
        self.counts = dict.fromkeys(topics, 0)
        for topic, msg_type in topics.items():
            msgtype = _msgtype(msg_type)
            connection = self._writer.add_connection(topic, msgtype, typestore=self._store)
            node.create_subscription(msg_type, topic,
                                     lambda data, c=connection, t=topic: self._record(c, t, data),
                                     qos, raw=True)

    def _record(self, connection, topic: str, data: bytes) -> None:
        self._writer.write(connection, time.time_ns(), data)
        self.counts[topic] += 1

    def close(self) -> None:
        self._writer.close()


def _msgtype(msg_type) -> str:
    """Name an rclpy message class as 'package/msg/Name'."""
    module = msg_type.__module__.split('.')[0]
    return f'{module}/msg/{msg_type.__name__}'
