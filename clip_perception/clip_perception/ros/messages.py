"""
Engine results to ROS messages (vision_msgs 4.x, sensor_msgs), and the debug overlay.

Conventions: class_id is the label text, score is always set, boxes are
center/size in pixels of the input image, headers are the input's header.
"""
from clip_perception.engine.boxes import center_size, Detection
from clip_perception.engine.depth import Box3D, box_to_3d, Pinhole
from clip_perception.engine.memory import Match as MemoryMatch, NS_PER_SEC
from clip_perception_interfaces.msg import Match
import cv2
import numpy as np
from sensor_msgs.msg import Image
from vision_msgs.msg import (Classification, Detection2D, Detection2DArray, Detection3D,
                             Detection3DArray, LabelInfo, ObjectHypothesis,
                             ObjectHypothesisWithPose, VisionClass)


def stamp_ns(header) -> int:
    """Return a message header's stamp in nanoseconds."""
    return header.stamp.sec * NS_PER_SEC + header.stamp.nanosec


def detection_array(header, detections: list[Detection],
                    scale: tuple[float, float] = (1.0, 1.0)) -> Detection2DArray:
    """Boxes found on an image downscaled by `scale` are mapped back to input pixels."""
    out = Detection2DArray(header=header)
    for found in detections:
        cx, cy, w, h = found.center_size
        msg = Detection2D(header=header, id=found.track_id)
        hypothesis = ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = found.label
        hypothesis.hypothesis.score = float(found.score)
        msg.results.append(hypothesis)
        msg.bbox.center.position.x = cx / scale[0]
        msg.bbox.center.position.y = cy / scale[1]
        msg.bbox.center.theta = 0.0
        msg.bbox.size_x = w / scale[0]
        msg.bbox.size_y = h / scale[1]
        out.detections.append(msg)
    return out


def match(found: MemoryMatch) -> Match:
    """Turn a memory match into the Find service's Match (header: the stored frame's)."""
    out = Match(robot=found.frame.robot, camera=found.frame.camera, score=float(found.score))
    out.header.stamp.sec, out.header.stamp.nanosec = divmod(found.frame.stamp_ns, NS_PER_SEC)
    out.header.frame_id = found.frame.frame_id
    (out.bbox.center.position.x, out.bbox.center.position.y,
     out.bbox.size_x, out.bbox.size_y) = center_size(found.box)
    return out


def detection_3d_array(header, detections: Detection2DArray, depth: np.ndarray,
                       camera: Pinhole) -> tuple[Detection3DArray, list[Box3D | None]]:
    """
    Place 2D detections (input pixels) in 3D with an aligned depth image in metres.

    Returns the array (detections with too few valid depth pixels left out) and
    per 2D detection its Box3D or None. Frame: the camera's optical frame (header).
    """
    out, boxes = Detection3DArray(header=header), []
    for found in detections.detections:
        box = box_to_3d(depth, box_corners(found), camera)
        boxes.append(box)
        if box is None:
            continue
        msg = Detection3D(header=header, id=found.id, results=found.results)
        (msg.bbox.center.position.x, msg.bbox.center.position.y,
         msg.bbox.center.position.z) = box.center
        msg.bbox.center.orientation.w = 1.0
        msg.bbox.size.x, msg.bbox.size.y, msg.bbox.size.z = box.size
        out.detections.append(msg)
    return out, boxes


def box_corners(detection) -> tuple[float, float, float, float]:
    """Return a Detection2D's bbox (center/size) as x0, y0, x1, y1 pixels."""
    c, w, h = detection.bbox.center.position, detection.bbox.size_x, detection.bbox.size_y
    return c.x - w / 2, c.y - h / 2, c.x + w / 2, c.y + h / 2


def classification(header, scores: list[tuple[str, float]]) -> Classification:
    """All labels with their image-level scores, best first."""
    return Classification(header=header, results=[
        ObjectHypothesis(class_id=label, score=float(score)) for label, score in scores])


def label_info(header, labels, threshold: float) -> LabelInfo:
    """class_map ids are the label indices; class_id in detections is the name itself."""
    return LabelInfo(header=header, threshold=float(threshold), class_map=[
        VisionClass(class_id=index, class_name=label) for index, label in enumerate(labels)])


def debug_image(header, pixels: np.ndarray, bgr: bool, detections: Detection2DArray,
                boxes_3d: list[Box3D | None] | None = None) -> Image:
    """
    Draw each detection's box, label and score on the input (as rgb8).

    With its track id when it has one, and its distance when `boxes_3d` (one per
    detection) places it.
    """
    canvas = np.ascontiguousarray(pixels[:, :, ::-1] if bgr else pixels)
    thickness = max(1, round(min(canvas.shape[:2]) / 240))
    for index, det in enumerate(detections.detections):
        x0, y0, x1, y1 = (int(v) for v in box_corners(det))
        colour = _label_colour(det.results[0].hypothesis.class_id)
        cv2.rectangle(canvas, (x0, y0), (x1, y1), colour, thickness)
        text = f'{det.results[0].hypothesis.class_id} {det.results[0].hypothesis.score:.2f}'
        text = f'#{det.id} {text}' if det.id else text
        if boxes_3d and boxes_3d[index] is not None:
            text += f' {boxes_3d[index].distance:.2f} m'
        cv2.putText(canvas, text, (x0 + 2, max(12, y0 - 4)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.4 * thickness, colour, thickness, cv2.LINE_AA)
    msg = Image(header=header, height=canvas.shape[0], width=canvas.shape[1],
                encoding='rgb8', is_bigendian=0, step=canvas.shape[1] * 3)
    msg.data = canvas.tobytes()
    return msg


def heatmap_image(header, pixels: np.ndarray, bgr: bool, heatmaps: np.ndarray,
                  labels) -> Image:
    """
    Overlay per-label heatmaps on the input (as rgb8), each label in its colour.

    heatmaps [L, rows, cols] in 0..1 over the whole frame; each pixel takes the colour
    of its strongest label, blended in by that label's value. The strongest label and
    its value are found on the maps' own grid, then scaled to the frame: memory
    grows with the frame, not with frame × labels (300 labels on a 1920×1080 frame
    would need 2.5 GB of full-size maps).
    """
    canvas = (pixels[:, :, ::-1] if bgr else pixels).astype(np.float32)
    height, width = canvas.shape[:2]
    maps = np.asarray(heatmaps, np.float32)
    strongest = cv2.resize(maps.argmax(axis=0).astype(np.int32), (width, height),
                           interpolation=cv2.INTER_NEAREST)
    alpha = cv2.resize(np.clip(maps.max(axis=0), 0.0, 1.0), (width, height),
                       interpolation=cv2.INTER_LINEAR)[:, :, None] * 0.6
    colours = np.array([_label_colour(label) for label in labels], np.float32)
    canvas = canvas * (1.0 - alpha) + colours[strongest] * alpha
    canvas = np.ascontiguousarray(canvas.round().clip(0, 255).astype(np.uint8))
    msg = Image(header=header, height=height, width=width, encoding='rgb8', is_bigendian=0,
                step=width * 3)
    msg.data = canvas.tobytes()
    return msg


def _label_colour(label: str) -> tuple[int, int, int]:
    """Return a stable, saturated colour per label."""
    hue = (sum(map(ord, label)) * 37) % 180
    hsv = np.uint8([[[hue, 220, 255]]])
    return tuple(int(c) for c in cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0, 0])
