"""
What the node publishes, and its health on /diagnostics.

Per frame detections, classification, 3D and debug images; label info when
the labels change.

The lifecycle publishers exist only where they can publish (heatmaps with a
localizer that draws them, 3D with depth). The counters, rates and latencies
that /diagnostics reports are kept here too (`FrameStats`).
"""
from dataclasses import dataclass, field
import time

from clip_perception.ros import messages
from clip_perception.ros.diagnostics import LatencyWindow, RateMeter
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rclpy.qos import DurabilityPolicy, qos_profile_sensor_data, QoSProfile, ReliabilityPolicy
from sensor_msgs.msg import Image
from std_msgs.msg import Header
from vision_msgs.msg import Classification, Detection2DArray, Detection3DArray, LabelInfo

COUNTERS = ('received', 'processed', 'dropped', 'rejected', 'paused', 'failed', 'without_3d')


@dataclass
class FrameStats:
    """Frame counters (COUNTERS), input and output rates, latency and engine time."""

    counters: dict = field(default_factory=lambda: dict.fromkeys(COUNTERS, 0))
    input_rate: RateMeter = field(default_factory=RateMeter)
    output_rate: RateMeter = field(default_factory=RateMeter)
    latency: LatencyWindow = field(default_factory=LatencyWindow)
    engine_time: LatencyWindow = field(default_factory=LatencyWindow)

    def count(self, counter: str, amount: int = 1) -> None:
        self.counters[counter] += amount


class Outputs:
    """The node's publishers and what one frame publishes."""

    def __init__(self, node, depth, stats: FrameStats):
        self.node, self._depth, self.stats = node, depth, stats
        self._lifecycle = []
        self.detections_pub = self.classification_pub = self.label_info_pub = None
        self.debug_pub = self.heatmap_pub = self.detections_3d_pub = None
        self.diagnostics_pub = node.create_publisher(DiagnosticArray, '/diagnostics', 10)

    def create(self, heatmaps: bool, with_3d: bool) -> None:
        """Create the lifecycle publishers (on configure)."""
        node = self.node
        self.detections_pub = node.create_lifecycle_publisher(Detection2DArray, 'detections', 10)
        self.classification_pub = node.create_lifecycle_publisher(
            Classification, 'classification', 10)
        self.label_info_pub = node.create_lifecycle_publisher(LabelInfo, 'label_info', QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.debug_pub = node.create_lifecycle_publisher(Image, '~/debug_image',
                                                         qos_profile_sensor_data)
        self._lifecycle = [self.detections_pub, self.classification_pub, self.label_info_pub,
                           self.debug_pub]
        if heatmaps:
            self.heatmap_pub = node.create_lifecycle_publisher(Image, '~/heatmap',
                                                               qos_profile_sensor_data)
            self._lifecycle.append(self.heatmap_pub)
        if with_3d:
            self.detections_3d_pub = node.create_lifecycle_publisher(
                Detection3DArray, 'detections_3d', 10)
            self._lifecycle.append(self.detections_3d_pub)
        self._depth.publisher = self.detections_3d_pub

    def destroy(self) -> None:
        """Destroy the lifecycle publishers (on cleanup and shutdown)."""
        for publisher in self._lifecycle:
            self.node.destroy_lifecycle_publisher(publisher)
        self._lifecycle.clear()
        self.heatmap_pub = self.detections_3d_pub = self._depth.publisher = None

    def publish(self, parked, frame, result, debug: bool, depth_slop: float) -> None:
        """Publish one frame's outputs: detections, classification, 3D and debug images."""
        header = parked.msg.header
        detections = messages.detection_array(header, result.detections, frame.scale)
        self.detections_pub.publish(detections)
        self.classification_pub.publish(messages.classification(header, result.classification))
        boxes_3d = self._depth.publish(parked.topic, parked.msg, parked.depth, detections,
                                       depth_slop)
        if debug and self.debug_pub.get_subscription_count() > 0:
            self.debug_pub.publish(messages.debug_image(
                header, frame.pixels, frame.bgr,
                messages.detection_array(header, result.detections), boxes_3d))
        if (debug and result.heatmaps is not None and self.heatmap_pub
                and self.heatmap_pub.get_subscription_count() > 0):
            self.heatmap_pub.publish(messages.heatmap_image(
                header, frame.pixels, frame.bgr, result.heatmaps, result.heatmap_labels))
        self.stats.latency.add(time.monotonic() - parked.received)
        self.stats.output_rate.tick()
        self.stats.count('processed')

    def publish_label_info(self, labels, threshold: float) -> None:
        header = Header()
        header.stamp = self.node.get_clock().now().to_msg()
        self.label_info_pub.publish(messages.label_info(header, labels, threshold))

    def publish_diagnostics(self, status: DiagnosticStatus) -> None:
        array = DiagnosticArray(status=[status])
        array.header.stamp = self.node.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)


def inference_status(name: str, state: str, stats: FrameStats, values: dict, running: bool,
                     stalled: float, watchdog_sec: float, enabled: bool) -> DiagnosticStatus:
    """
    Build the node's /diagnostics status: counters, rates, latency and the watchdog.

    `values`: what else to report (device, model, labels, max_batch). ERROR when the
    inference thread has ended or frames have waited over `watchdog_sec`, or frames
    failed; WARN when frames were rejected.
    """
    c = stats.counters
    values = {
        'state': state,
        'input_rate_hz': f'{stats.input_rate.rate():.2f}',
        'processed_rate_hz': f'{stats.output_rate.rate():.2f}',
        **{f'frames_{counter}': c[counter] for counter in COUNTERS},
        'latency_p50_ms': f'{stats.latency.percentile_ms(50):.1f}',
        'latency_p95_ms': f'{stats.latency.percentile_ms(95):.1f}',
        'engine_time_p50_ms': f'{stats.engine_time.percentile_ms(50):.1f}',
        **values,
        'enabled': enabled,
    }
    if stalled:
        values['waiting_sec'] = f'{stalled:.1f}'
    if state != 'active':
        level, message = DiagnosticStatus.OK, state
    elif not running:
        level, message = DiagnosticStatus.ERROR, 'the inference thread has ended'
    elif stalled > watchdog_sec:
        level, message = DiagnosticStatus.ERROR, (
            f'no frame handled for {stalled:.0f} s while frames arrive (watchdog_sec '
            f'{watchdog_sec:g}): inference is stalled')
    elif not enabled:
        level, message = DiagnosticStatus.OK, 'paused'
    elif c['failed']:
        level, message = DiagnosticStatus.ERROR, f'{c["failed"]} frames failed in inference'
    elif c['rejected']:
        level, message = DiagnosticStatus.WARN, f'{c["rejected"]} frames rejected'
    else:
        level, message = DiagnosticStatus.OK, 'running'
    return DiagnosticStatus(level=level, name=f'{name}: inference', message=message,
                            hardware_id=str(values.get('device', '')),
                            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])
