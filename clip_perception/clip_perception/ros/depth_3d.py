"""
Depth and camera info per camera, matched to its colour frames, and detections_3d.

Each camera with depth has a depth image and a camera info topic (parameters
depth_topics, camera_info_topics, in the order of image_topics). A colour frame
claims its depth image and camera info when it arrives (stamp_matching.Claim),
so the match holds however long the frame then waits for inference; after
inference its detections are placed in 3D and published. A frame without
usable depth gets no 3D message; why is counted (frames_without_3d) and logged.
"""
from dataclasses import dataclass

from clip_perception.engine.depth import Pinhole
from clip_perception.engine.memory import NS_PER_SEC
from clip_perception.ros import messages
from clip_perception.ros.image_conversion import depth_from_raw, ImageError
from clip_perception.ros.stamp_matching import Claim, NoMatch, StampBuffer
from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.validate_topic_name import validate_topic_name
from sensor_msgs.msg import CameraInfo, Image


def depth_topic_pairs(depth, info, image_topics: int) -> list[tuple[str, str]]:
    """
    Check depth_topics and camera_info_topics: per image topic its (depth, info) names.

    [] when both are empty (no 3D). ValueError names the parameter that is wrong
    (a string or number instead of a list, a count that does not match the image
    topics, a name ROS refuses).
    """
    for name, value in (('depth_topics', depth), ('camera_info_topics', info)):
        if value is None:  # what a dump's [] reads back as in some rclpy versions
            continue
        if not isinstance(value, (list, tuple)) or not all(isinstance(t, str) for t in value):
            raise ValueError(f'{name} must be a list of topic names (one per image topic), '
                             f'got {value!r}')
    depth, info = list(depth or []), list(info or [])
    if not depth and not info:
        return []
    if not len(depth) == len(info) == image_topics:
        raise ValueError(f'depth_topics ({len(depth)}) and camera_info_topics '
                         f'({len(info)}) must name one topic per image topic ({image_topics})')
    for topic in depth + info:
        try:
            validate_topic_name(topic)
        except Exception as error:  # rclpy's InvalidTopicNameException, with a long message
            raise ValueError(f'depth_topics/camera_info_topics: {topic!r} is not a valid '
                             f'topic name: {str(error).splitlines()[0]}') from None
    return list(zip(depth, info))


@dataclass
class DepthClaims:
    """A colour frame's claims on its camera's depth image and camera info."""

    buffers: tuple[StampBuffer, StampBuffer]
    claims: tuple[Claim, Claim]

    def release(self) -> None:
        for buffer, claim in zip(self.buffers, self.claims):
            buffer.release(claim)


class Depth3D:
    """The 3D path of one node: depth inputs per camera and the detections_3d output."""

    def __init__(self, node, throttled_log, count_without_3d):
        """`node`: subscriptions and parameters; `count_without_3d()`: one frame without 3D."""
        self._node = node
        self._log = throttled_log
        self._count_without_3d = count_without_3d
        self._buffers: dict[str, tuple[StampBuffer, StampBuffer]] = {}  # per image topic
        self.publisher = None

    @property
    def enabled(self) -> bool:
        return bool(self._buffers)

    def subscribe(self, image_topics: list[str], pairs: list[tuple[str, str]]) -> list:
        """Subscribe each camera's depth and camera info (resolved names); the subscriptions."""
        qos = QoSProfile(depth=5, history=HistoryPolicy.KEEP_LAST,
                         reliability=ReliabilityPolicy.BEST_EFFORT)  # matches either
        node, subscriptions = self._node, []
        self._buffers = {}
        for image_topic, topics in zip(image_topics, pairs):
            resolved = tuple(node.resolve_topic_name(topic) for topic in topics)
            buffers = tuple(StampBuffer(topic) for topic in resolved)
            self._buffers[image_topic] = buffers
            for msg_type, topic, buffer in zip((Image, CameraInfo), resolved, buffers):
                subscriptions.append(node.create_subscription(
                    msg_type, topic,
                    lambda msg, b=buffer: b.add(messages.stamp_ns(msg.header), msg), qos))
        return subscriptions

    def claim(self, image_topic: str, header) -> DepthClaims | None:
        """At a frame's arrival: hold the depth and camera info closest to its stamp."""
        buffers = self._buffers.get(image_topic)
        if buffers is None:
            return None
        stamp = messages.stamp_ns(header)
        return DepthClaims(buffers, tuple(buffer.claim(stamp) for buffer in buffers))

    def publish(self, image_topic: str, msg, claims: DepthClaims | None, detections,
                slop_sec: float) -> list | None:
        """
        Publish a frame's detections in 3D; per detection its Box3D or None (None: no 3D).

        `msg`: the colour image (its header and size); `detections`: its
        Detection2DArray. Without a usable depth image or camera info (none yet,
        stamped too far off, bad encoding, another size) nothing is published, the
        frame is counted as without 3D and the reason logged.
        """
        if claims is None or self.publisher is None:
            return None
        slop = int(slop_sec * NS_PER_SEC)
        try:
            depth_msg, info = (claim.match(slop) for claim in claims.claims)
            depth = depth_from_raw(depth_msg.height, depth_msg.width, depth_msg.encoding,
                                   depth_msg.step, depth_msg.is_bigendian, depth_msg.data)
            size = getattr(msg, 'width', None), getattr(msg, 'height', None)
            if None not in size and depth.shape != size[::-1]:
                raise ValueError(f'the depth image is {depth.shape[1]}×{depth.shape[0]}, the '
                                 f'colour image {size[0]}×{size[1]}: they must be aligned')
            if None not in size and info.width and info.height and \
                    (info.width, info.height) != size:
                raise ValueError(f'the camera info is for {info.width}×{info.height} images, '
                                 f'the colour image is {size[0]}×{size[1]}')
            camera = Pinhole.from_k(info.k)
        except (NoMatch, ImageError, ValueError) as error:
            self._count_without_3d()
            kind = getattr(error, 'kind', type(error).__name__)  # throttled per kind of fault
            self._log.warning(('3d', image_topic, kind),
                              f'{image_topic}: no 3D for this frame: {error}')
            return None
        array, boxes = messages.detection_3d_array(msg.header, detections, depth, camera)
        if len(array.detections) < len(boxes):
            self._log.warning(('3d boxes', image_topic),
                              f'{image_topic}: {len(boxes) - len(array.detections)} '
                              'detections without valid depth (0, NaN or out of range) inside '
                              'their box: left out of detections_3d')
        self.publisher.publish(array)
        return boxes
