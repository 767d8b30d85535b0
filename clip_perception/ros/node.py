"""
clip_perception node: camera images in, vision_msgs detections out.

A thin adapter: parameters, subscriptions, conversions and publishing. All
tensor work happens in the engine (`ZeroShotDetector`). Subscription callbacks
only convert and park the newest frame of each camera; one inference thread
takes every parked frame at once (several cameras: one batch), so inference
never works through a backlog, and each overwritten frame is counted as dropped.
"""
from dataclasses import dataclass
import sys
import threading
import time

from clip_perception.engine.detector import ZeroShotDetector
from clip_perception.engine.model_loading import load_clip, ModelLoadError
from clip_perception.ros import messages
from clip_perception.ros.diagnostics import LatencyWindow, RateMeter
from clip_perception.ros.image_conversion import (fit_to_pixel_budget, Frame,
                                                  frame_from_compressed, frame_from_raw,
                                                  ImageError)
from clip_perception.ros.parameters import (BY_NAME, check_choices, DETECTOR_PARAMETERS,
                                            detector_settings, PARAMETERS)
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                ParameterType, SetParametersResult)
import rclpy
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, qos_profile_sensor_data, QoSProfile,
                       ReliabilityPolicy)
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from std_srvs.srv import SetBool
from vision_msgs.msg import Classification, Detection2DArray, LabelInfo

_TYPES = {
    'string': ParameterType.PARAMETER_STRING,
    'string_array': ParameterType.PARAMETER_STRING_ARRAY,
    'double': ParameterType.PARAMETER_DOUBLE,
    'double_array': ParameterType.PARAMETER_DOUBLE_ARRAY,
    'integer': ParameterType.PARAMETER_INTEGER,
    'bool': ParameterType.PARAMETER_BOOL,
}
_LOG_EVERY_SEC = 5.0


def _descriptor(spec) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(name=spec.name, type=_TYPES[spec.kind],
                                     description=spec.description, read_only=spec.read_only)
    if spec.choices:
        descriptor.additional_constraints = 'one of: ' + ', '.join(spec.choices)
    if spec.limits and spec.kind == 'double':
        descriptor.floating_point_range = [FloatingPointRange(
            from_value=float(spec.limits[0]), to_value=float(spec.limits[1]), step=0.0)]
    if spec.limits and spec.kind == 'integer':
        descriptor.integer_range = [IntegerRange(
            from_value=int(spec.limits[0]), to_value=int(spec.limits[1]), step=0)]
    return descriptor


@dataclass
class PendingFrame:
    header: object
    frame: Frame
    received: float  # time.monotonic() when the message arrived


class ClipPerceptionNode(Node):

    def __init__(self, encoder=None, **node_options):
        """
        Declare the parameters, load the model, create the interfaces.

        `encoder`: an already loaded encoder (tests); by default the `model`
        parameter is loaded. Raises ModelLoadError or ValueError on bad set-up.
        """
        super().__init__('clip_perception', **node_options)
        for spec in PARAMETERS:
            if spec.kind == 'string_array' and not spec.default:
                self.declare_parameter(spec.name, Parameter.Type.STRING_ARRAY, _descriptor(spec))
            else:
                self.declare_parameter(spec.name, spec.default, _descriptor(spec))
        settings = detector_settings(self._values(DETECTOR_PARAMETERS))
        check_choices(self._values(('image_reliability', 'image_transport', 'precision')))
        if encoder is None:
            encoder = load_clip(self._value('model'), self._value('device'),
                                self._value('precision'))
        self.model_name = getattr(encoder, 'name', '') or self._value('model')
        self.detector = ZeroShotDetector(encoder, settings)
        self._detector_lock = threading.Lock()
        self._enabled = self._value('enabled')
        self._publish_debug = self._value('publish_debug_image')
        self._max_image_pixels = self._value('max_image_pixels')

        self._pending: dict[str, PendingFrame] = {}
        self._wake = threading.Condition()
        self.counters = {'received': 0, 'processed': 0, 'dropped': 0, 'rejected': 0,
                         'paused': 0, 'failed': 0}
        self._input_rate, self._output_rate = RateMeter(), RateMeter()
        self._latency, self._engine_time = LatencyWindow(), LatencyWindow()

        self.detections_pub = self.create_publisher(Detection2DArray, 'detections', 10)
        self.classification_pub = self.create_publisher(Classification, 'classification', 10)
        self.label_info_pub = self.create_publisher(LabelInfo, 'label_info', QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.debug_pub = self.create_publisher(Image, '~/debug_image', qos_profile_sensor_data)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self._subscribe_inputs()
        self.create_service(SetBool, '~/enable', self._on_enable)
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.create_timer(1.0, self._publish_diagnostics)
        self._publish_label_info()

        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._inference_loop, name='clip_inference',
                                        daemon=True)
        self._worker.start()
        self.get_logger().info(
            f'ready: model {self.model_name} on {encoder.device}, labels {list(settings.labels)}, '
            f'box regression {"on" if self.detector.regresses_boxes else "off"}, '
            f'inputs {self.input_topics}')

    # --- parameters -----------------------------------------------------------------
    def _value(self, name: str):
        # A string array declared without a value (image_topics) reads as empty.
        return self.get_parameter_or(name, Parameter(name, value=BY_NAME[name].default)).value

    def _values(self, names) -> dict:
        return {name: self._value(name) for name in names}

    def _validate_parameters(self, parameters: list[Parameter]) -> SetParametersResult:
        changes = {p.name: p.value for p in parameters}
        try:
            if changes.keys() & set(DETECTOR_PARAMETERS):
                values = self._values(DETECTOR_PARAMETERS)
                values.update({k: v for k, v in changes.items() if k in DETECTOR_PARAMETERS})
                detector_settings(values)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters: list[Parameter]) -> None:
        names = {p.name for p in parameters}
        if names & set(DETECTOR_PARAMETERS):
            settings = detector_settings(self._values(DETECTOR_PARAMETERS))
            with self._detector_lock:  # waits for a running inference; re-encodes text once
                changed = {f: getattr(settings, f) for f in settings.__dataclass_fields__
                           if getattr(settings, f) != getattr(self.detector.settings, f)}
                self.detector.update(**changed)
            if {'labels', 'score_threshold'} & names:
                self._publish_label_info()
            self.get_logger().info(f'updated: {", ".join(sorted(names))}')
        self._enabled = self._value('enabled')
        self._publish_debug = self._value('publish_debug_image')
        self._max_image_pixels = self._value('max_image_pixels')

    def _on_enable(self, request, response):
        result = self.set_parameters([Parameter('enabled', value=bool(request.data))])[0]
        response.success = result.successful
        response.message = 'inference enabled' if request.data else 'inference paused'
        return response

    # --- inputs ---------------------------------------------------------------------
    def _subscribe_inputs(self) -> None:
        reliability = (ReliabilityPolicy.RELIABLE if self._value('image_reliability') == 'reliable'
                       else ReliabilityPolicy.BEST_EFFORT)
        qos = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=reliability,
                         durability=DurabilityPolicy.VOLATILE)
        topics = self._value('image_topics') or ['image']
        compressed = self._value('image_transport') == 'compressed'
        self.input_topics = []
        for topic in topics:
            resolved = self.resolve_topic_name(topic)
            if compressed:
                resolved = resolved.rstrip('/') + '/compressed'
                self.create_subscription(CompressedImage, resolved,
                                         lambda msg, t=resolved: self._on_compressed(t, msg), qos)
            else:
                self.create_subscription(Image, resolved,
                                         lambda msg, t=resolved: self._on_image(t, msg), qos)
            self.input_topics.append(resolved)

    def _on_image(self, topic: str, msg: Image) -> None:
        self._receive(topic, msg.header, lambda: frame_from_raw(
            msg.height, msg.width, msg.encoding, msg.step, msg.data))

    def _on_compressed(self, topic: str, msg: CompressedImage) -> None:
        self._receive(topic, msg.header, lambda: frame_from_compressed(msg.format, msg.data))

    def _receive(self, topic: str, header, convert) -> None:
        received = time.monotonic()
        self._input_rate.tick(received)
        self.counters['received'] += 1
        if not self._enabled:
            self.counters['paused'] += 1
            return
        try:
            converted = convert()
        except ImageError as error:
            self.counters['rejected'] += 1
            self.get_logger().warning(f'{topic}: image rejected: {error}',
                                      throttle_duration_sec=_LOG_EVERY_SEC)
            return
        frame = fit_to_pixel_budget(converted, self._max_image_pixels)
        if frame is not converted:
            height, width = converted.pixels.shape[:2]
            self.get_logger().warning(
                f'{topic}: {width}×{height} image exceeds max_image_pixels='
                f'{self._max_image_pixels}: downscaled by {frame.scale[0]:.3f} for inference '
                '(boxes stay in input pixels)', throttle_duration_sec=_LOG_EVERY_SEC)
        with self._wake:
            if topic in self._pending:
                self.counters['dropped'] += 1
            self._pending[topic] = PendingFrame(header, frame, received)
            self._wake.notify()

    # --- inference ------------------------------------------------------------------
    def _inference_loop(self) -> None:
        while not self._stop.is_set():
            with self._wake:
                self._wake.wait_for(lambda: self._pending or self._stop.is_set(), timeout=0.5)
                batch = list(self._pending.values())
                self._pending.clear()
            if batch and not self._stop.is_set():
                self._infer(batch)

    def _infer(self, batch: list[PendingFrame]) -> None:
        started = time.monotonic()
        try:
            with self._detector_lock:
                results = self.detector.detect_batch([p.frame.pixels for p in batch],
                                                     bgr=[p.frame.bgr for p in batch])
        except Exception as error:  # keep running: log, count, next frame
            self.counters['failed'] += len(batch)
            self.get_logger().error(f'inference failed: {type(error).__name__}: {error}',
                                    throttle_duration_sec=_LOG_EVERY_SEC)
            return
        self._engine_time.add(time.monotonic() - started)
        want_debug = self._publish_debug and self.debug_pub.get_subscription_count() > 0
        for pending, result in zip(batch, results):
            detections = messages.detection_array(pending.header, result.detections,
                                                  pending.frame.scale)
            self.detections_pub.publish(detections)
            self.classification_pub.publish(
                messages.classification(pending.header, result.classification))
            self._latency.add(time.monotonic() - pending.received)
            self._output_rate.tick()
            self.counters['processed'] += 1
            if want_debug:
                self.debug_pub.publish(messages.debug_image(
                    pending.header, pending.frame.pixels, pending.frame.bgr,
                    messages.detection_array(pending.header, result.detections)))

    # --- outputs --------------------------------------------------------------------
    def _publish_label_info(self) -> None:
        settings = self.detector.settings
        header = Header()
        header.stamp = self.get_clock().now().to_msg()
        self.label_info_pub.publish(
            messages.label_info(header, settings.labels, settings.score_threshold))

    def diagnostic_status(self) -> DiagnosticStatus:
        c = self.counters
        values = {
            'input_rate_hz': f'{self._input_rate.rate():.2f}',
            'processed_rate_hz': f'{self._output_rate.rate():.2f}',
            'frames_received': c['received'], 'frames_processed': c['processed'],
            'frames_dropped': c['dropped'], 'frames_rejected': c['rejected'],
            'frames_paused': c['paused'], 'frames_failed': c['failed'],
            'latency_p50_ms': f'{self._latency.percentile_ms(50):.1f}',
            'latency_p95_ms': f'{self._latency.percentile_ms(95):.1f}',
            'engine_time_p50_ms': f'{self._engine_time.percentile_ms(50):.1f}',
            'device': str(self.detector.encoder.device), 'model': self.model_name,
            'labels': len(self.detector.settings.labels),
            'max_batch': self.detector.batch_size, 'enabled': self._enabled,
        }
        if not self._enabled:
            level, message = DiagnosticStatus.OK, 'paused'
        elif c['failed']:
            level, message = DiagnosticStatus.ERROR, f'{c["failed"]} frames failed in inference'
        elif c['rejected']:
            level, message = DiagnosticStatus.WARN, f'{c["rejected"]} frames rejected'
        else:
            level, message = DiagnosticStatus.OK, 'running'
        return DiagnosticStatus(
            level=level, name=f'{self.get_fully_qualified_name()}: inference', message=message,
            hardware_id=str(self.detector.encoder.device),
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])

    def _publish_diagnostics(self) -> None:
        array = DiagnosticArray(status=[self.diagnostic_status()])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)

    def close(self) -> None:
        """Stop the inference thread and release the model (and its GPU memory)."""
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        self._worker.join(timeout=30.0)
        with self._detector_lock:
            release = getattr(self.detector.encoder, 'release', None)
            if release:
                release()


def main(args=None) -> int:
    """Exit 0 on SIGINT/SIGTERM (what `ros2 launch` sends), 1 when set-up fails."""
    rclpy.init(args=args)  # SIGINT and SIGTERM shut the context down: spin returns
    executor = SingleThreadedExecutor()  # before the node: a signal may come at any time
    node = None
    try:
        node = ClipPerceptionNode()
        executor.add_node(node)
        executor.spin()
    except (ModelLoadError, ValueError) as error:
        rclpy.logging.get_logger('clip_perception').fatal(f'cannot start: {error}')
        return 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
        # A signal shut the context down while the node was starting: nothing to report.
    finally:
        if node is not None:
            node.close()
            node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
