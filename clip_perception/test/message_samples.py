"""Deterministic sample messages shared by a test and the peer process it talks to."""
import numpy as np
from sensor_msgs.msg import Image
from vision_msgs.msg import BoundingBox2D, Detection2D, Detection2DArray, ObjectHypothesisWithPose

IMAGE_WIDTH, IMAGE_HEIGHT = 640, 480


def image_pixels(width: int = IMAGE_WIDTH, height: int = IMAGE_HEIGHT) -> np.ndarray:
    """Return an RGB test pattern (H×W×3 uint8) in which every row and column differs."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x % 256, y % 256, (x + 3 * y) % 251], axis=-1).astype(np.uint8)


def sample_image(seq: int) -> Image:
    msg = Image()
    msg.header.stamp.sec = 1_700_000_000 + seq
    msg.header.stamp.nanosec = 123_456_789
    msg.header.frame_id = 'camera_optical_frame'
    msg.height, msg.width = IMAGE_HEIGHT, IMAGE_WIDTH
    msg.encoding = 'rgb8'
    msg.is_bigendian = 0
    msg.step = IMAGE_WIDTH * 3
    msg.data = image_pixels().tobytes()
    return msg


def detections_for(image: Image) -> Detection2DArray:
    """Build what the peer answers for a received image: two boxes, header copied."""
    out = Detection2DArray()
    out.header = image.header
    for index, (label, score) in enumerate([('hammer', 0.875), ('tape measure', 0.5)]):
        det = Detection2D()
        det.header = image.header
        hyp = ObjectHypothesisWithPose()
        hyp.hypothesis.class_id = label
        hyp.hypothesis.score = score
        hyp.pose.pose.position.x = 10.0 + index
        hyp.pose.covariance[0] = 0.25
        det.results.append(hyp)
        det.bbox = BoundingBox2D()
        det.bbox.center.position.x = 100.5 + 200 * index
        det.bbox.center.position.y = 80.25
        det.bbox.center.theta = 0.0
        det.bbox.size_x = 64.0
        det.bbox.size_y = 32.0 + index
        det.id = f'track-{index}'
        out.detections.append(det)
    return out
