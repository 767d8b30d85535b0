"""
clip_perception node: camera images in, vision_msgs detections out.

A thin managed (lifecycle) adapter around the engine's ZeroShotDetector:

    unconfigured --configure--> inactive   parameters read and checked, publishers
    inactive     --activate-->  active     model loaded, subscriptions, inference thread
    active       --deactivate-> inactive   thread stopped, subscriptions and model
                                           released (GPU memory freed)
    inactive     --cleanup-->   unconfigured

With `autostart` (the default) `run_node.main` configures and activates it at start-up;
a transition that fails logs one `cannot start:` line and the process exits 1.

The node keeps the lifecycle, the parameters and the wiring; its parts live
beside it: the inference thread (inference_worker: callbacks only park the
newest message of each camera), what the thread does with frames
(frame_pipeline), the publishers and /diagnostics (outputs), the planner
services ~/detect and ~/find (planner_services), depth and detections_3d
(depth_3d). Parameter changes are checked when they are set and reach the
detector before its next frame, without waiting for the frame in progress.
"""
import functools
import time

from clip_perception.engine.detector import ZeroShotDetector
from clip_perception.engine.localizers import localizer
from clip_perception.engine.memory import FrameMemory
from clip_perception.engine.memory_store import StoreSettings
from clip_perception.engine.model_loading import load_encoder, ModelLoadError
from clip_perception.ros.depth_3d import Depth3D, depth_topic_pairs
from clip_perception.ros.frame_pipeline import FramePipeline
from clip_perception.ros.inference_worker import InferenceWorker, ParkedImage, STOP_WAIT_SEC
from clip_perception.ros.log_throttle import ThrottledLog
from clip_perception.ros.memory_backend import MemoryBackend, robot_name
from clip_perception.ros.outputs import FrameStats, inference_status, Outputs
from clip_perception.ros.package_files import resolve_model
from clip_perception.ros.parameters import (check_choices, memory_settings, PARAMETERS,
                                            STREAM_PARAMETERS, stream_settings)
from clip_perception.ros.planner_services import PlannerServices
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                ParameterType, SetParametersResult)
from rclpy.exceptions import InvalidTopicNameException
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.validate_topic_name import validate_topic_name
from sensor_msgs.msg import CompressedImage, Image
from std_srvs.srv import SetBool

_TYPES = {
    'string': ParameterType.PARAMETER_STRING,
    'string_array': ParameterType.PARAMETER_STRING_ARRAY,
    'double': ParameterType.PARAMETER_DOUBLE,
    'double_array': ParameterType.PARAMETER_DOUBLE_ARRAY,
    'integer': ParameterType.PARAMETER_INTEGER,
    'bool': ParameterType.PARAMETER_BOOL,
}


def _descriptor(spec) -> ParameterDescriptor:
    descriptor = ParameterDescriptor(name=spec.name, type=_TYPES[spec.kind],
                                     description=spec.description, read_only=spec.read_only)
    # rclpy types a parameter by its default and takes [] for a byte array: an array empty
    # by default is typed by its values instead (checked where it is read)
    descriptor.dynamic_typing = spec.default == []
    if spec.choices:
        descriptor.additional_constraints = 'one of: ' + ', '.join(spec.choices)
    if spec.limits and spec.kind == 'double':
        descriptor.floating_point_range = [FloatingPointRange(
            from_value=float(spec.limits[0]), to_value=float(spec.limits[1]), step=0.0)]
    if spec.limits and spec.kind == 'integer':
        descriptor.integer_range = [IntegerRange(
            from_value=int(spec.limits[0]), to_value=int(spec.limits[1]), step=0)]
    return descriptor


def _reported(callback):
    """
    Log what a lifecycle callback raises, and fail the transition.

    rclpy turns an exception in a transition callback into ERROR without a word;
    during configure or activate it is a `cannot start:` line, like the expected
    errors, so that every start-up failure says why.
    """
    @functools.wraps(callback)
    def guarded(self, state):
        try:
            return callback(self, state)
        except Exception as error:
            prefix = 'cannot start' if callback.__name__ in ('on_configure', 'on_activate') \
                else f'{callback.__name__} failed'
            self.get_logger().fatal(f'{prefix}: {type(error).__name__}: {error}')
            return TransitionCallbackReturn.ERROR
    return guarded


class ClipPerceptionNode(LifecycleNode):

    def __init__(self, encoder=None, **node_options):
        """
        Declare the parameters and the services; nothing is loaded before `configure`.

        `encoder`: an already loaded encoder (tests) used instead of loading the
        `model` parameter. Raises rclpy's ParameterException when a parameter given
        at start-up is of the wrong type or out of its range.
        """
        super().__init__('clip_perception', **node_options)
        self._given_encoder = encoder
        self.detector = None
        self.model_name = ''
        self.input_topics: list[str] = []
        self._inputs = []
        self.memory = FrameMemory()
        self.stats = FrameStats()
        self.counters = self.stats.counters
        self._log = ThrottledLog(self.get_logger())
        self.memory_backend = MemoryBackend(self.memory, self._log)
        self._depth = Depth3D(self, self._log,
                              functools.partial(self.stats.count, 'without_3d'))
        self.outputs = Outputs(self, self._depth, self.stats)
        self.pipeline = FramePipeline(self, self.outputs, self._log)
        self.planner = PlannerServices(self, self._log)
        self.worker = InferenceWorker(self.pipeline.process, self.planner.answer,
                                      self.pipeline.failed, self.planner.wake,
                                      functools.partial(self.stats.count, 'dropped'))
        # Last: a refused start-up value raises here, and rclpy then destroys this node.
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default, _descriptor(spec))
        self._read_runtime_switches()
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.create_service(SetBool, '~/enable', self._on_enable)
        self.create_timer(1.0, lambda: self.outputs.publish_diagnostics(
            self.diagnostic_status()))

    # --- lifecycle ------------------------------------------------------------------
    def start(self) -> bool:
        """Configure and activate (what `autostart` does); False when a step fails."""
        return (self.trigger_configure() == TransitionCallbackReturn.SUCCESS and
                self.trigger_activate() == TransitionCallbackReturn.SUCCESS)

    @_reported
    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            stream_settings(self._values(STREAM_PARAMETERS))
            check_choices(self._values(('image_reliability', 'image_transport', 'precision')))
            self.input_topics = self._input_topic_names()
            self._depth_pairs = depth_topic_pairs(self.value('depth_topics'),
                                                  self.value('camera_info_topics'),
                                                  len(self.input_topics))
            MemoryBackend.check(self.value('memory_store'))
        except (ValueError, InvalidTopicNameException) as error:
            return self._cannot_start(error)
        self.outputs.create(heatmaps=localizer(self.value('localizer')).draws_heatmaps,
                            with_3d=bool(self._depth_pairs))
        return super().on_configure(state)

    @_reported
    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            settings, tracking = stream_settings(self._values(STREAM_PARAMETERS))
            encoder = self._given_encoder
            if encoder is None:
                encoder = load_encoder(resolve_model(self.value('model')),
                                       self.value('device'), self.value('precision'),
                                       settings.localizer)
            self.detector = ZeroShotDetector(encoder, settings)
        except (ModelLoadError, ValueError) as error:
            return self._cannot_start(error)
        self.pipeline.start(tracking)
        self.memory_backend.start(StoreSettings(
            self.value('memory_store'), self.value('memory_store_token'),
            robot_name(self.value('memory_robot'), self.get_namespace(), self.get_name()),
            self.value('memory_store_rows'), self.value('memory_max_age')),
            self.detector.class_embeddings().matrix.shape[1])
        self.model_name = getattr(encoder, 'name', '') or self.value('model')
        result = super().on_activate(state)  # the publishers first: frames may come at once
        self.worker.start()
        self._inputs += self._depth.subscribe(self.input_topics, self._depth_pairs)
        self._subscribe_inputs()
        self._publish_label_info()
        self.get_logger().info(
            f'active: model {self.model_name} on {encoder.device}, labels '
            f'{list(settings.labels)}, localizer {settings.localizer}, box regression '
            f'{"on" if self.detector.regresses_boxes else "off"}, inputs {self.input_topics}')
        return result

    @_reported
    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        return super().on_deactivate(state)

    @_reported
    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        self.outputs.destroy()
        return super().on_cleanup(state)

    @_reported
    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        self.outputs.destroy()
        return TransitionCallbackReturn.SUCCESS

    @_reported
    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        self.outputs.destroy()
        return TransitionCallbackReturn.SUCCESS

    def _cannot_start(self, error: Exception) -> TransitionCallbackReturn:
        self.get_logger().fatal(f'cannot start: {error}')
        return TransitionCallbackReturn.FAILURE

    def _deactivate(self) -> None:
        self.stop_inference()
        for subscription in self._inputs:
            self.destroy_subscription(subscription)
        self._inputs.clear()
        self.worker.clear('the node was deactivated')
        self.memory_backend.close()
        if self.detector is not None and self._given_encoder is None:
            self.detector.encoder.release()  # and the CUDA cache with it
        self.detector = None

    def stop_inference(self, wait_sec: float = STOP_WAIT_SEC) -> bool:
        """
        Stop the inference thread; True once it has ended.

        A frame in progress is cancelled at its next encoder chunk and its results
        are not published; after `wait_sec` the thread is left to finish alone
        (False), and nothing it does later is published.
        """
        detector = self.detector
        return self.worker.stop(detector.cancel if detector else lambda: None, wait_sec)

    # --- parameters -----------------------------------------------------------------
    def value(self, name: str):
        """Return a parameter's current value."""
        return self.get_parameter(name).value

    def _values(self, names) -> dict:
        return {name: self.value(name) for name in names}

    def _read_runtime_switches(self) -> None:
        self.enabled = self.value('enabled')
        self.publish_debug = self.value('publish_debug_image')
        self.max_image_pixels = self.value('max_image_pixels')
        self.memory_on = self.value('memory')
        self.memory.settings = memory_settings(
            self._values(('memory_frames', 'memory_period', 'memory_max_age', 'memory_max_mb')))

    def _validate_parameters(self, parameters) -> SetParametersResult:
        changes = {p.name: p.value for p in parameters}
        try:
            if changes.keys() & set(STREAM_PARAMETERS):
                values = self._values(STREAM_PARAMETERS)
                values.update({k: v for k, v in changes.items() if k in STREAM_PARAMETERS})
                settings, _ = stream_settings(values)
                if self.detector is not None:  # what only the model can tell (patch size)
                    self.detector.check_settings(settings)
        except ValueError as error:
            return SetParametersResult(successful=False, reason=str(error))
        return SetParametersResult(successful=True)

    def _apply_parameters(self, parameters) -> None:
        names = {p.name for p in parameters}
        self._read_runtime_switches()
        if not names & set(STREAM_PARAMETERS):
            return
        # the inference thread takes them before its next frame
        self.pipeline.offer(stream_settings(self._values(STREAM_PARAMETERS)))
        if {'labels', 'score_threshold'} & names and self.detector is not None:
            self._publish_label_info()
        # throttled: a parameter storm must not become a log storm
        self._log.info(('updated',), f'updated: {", ".join(sorted(names))}')

    def _on_enable(self, request, response):
        result = self.set_parameters([Parameter('enabled', value=bool(request.data))])[0]
        response.success = result.successful
        response.message = 'inference enabled' if request.data else 'inference paused'
        return response

    # --- inputs ---------------------------------------------------------------------
    def _input_topic_names(self) -> list[str]:
        """Resolve the input topics; InvalidTopicNameException for a name ROS refuses."""
        topics = list(self.value('image_topics'))
        if not topics:
            raise ValueError('image_topics must name at least one topic')
        for topic in topics:
            validate_topic_name(topic)  # resolve_topic_name's own error is a bare RCLError
        suffix = '/compressed' if self.value('image_transport') == 'compressed' else ''
        return [self.resolve_topic_name(topic).rstrip('/') + suffix for topic in topics]

    def _subscribe_inputs(self) -> None:
        reliability = (ReliabilityPolicy.RELIABLE if self.value('image_reliability') == 'reliable'
                       else ReliabilityPolicy.BEST_EFFORT)
        qos = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=reliability,
                         durability=DurabilityPolicy.VOLATILE)
        msg_type = CompressedImage if self.value('image_transport') == 'compressed' else Image
        self._inputs += [self.create_subscription(msg_type, topic,
                                                  lambda msg, t=topic: self._park(t, msg), qos)
                         for topic in self.input_topics]

    def _park(self, topic: str, msg) -> None:
        received = time.monotonic()
        self.stats.input_rate.tick(received)
        self.stats.count('received')
        if not self.enabled:
            self.stats.count('paused')
            return
        self.worker.park(ParkedImage(topic, msg, received, self._depth.claim(topic, msg.header)))

    def frame_of(self, msg):
        """Convert an image message for the detector (see FramePipeline.frame_of)."""
        return self.pipeline.frame_of(msg)

    # --- outputs --------------------------------------------------------------------
    def _publish_label_info(self) -> None:
        self.outputs.publish_label_info(self.value('labels'), self.value('score_threshold'))

    def diagnostic_status(self):
        """Return the node's /diagnostics status (see outputs.inference_status)."""
        detector = self.detector
        return inference_status(
            self.get_fully_qualified_name().lstrip('/'), self._state_machine.current_state[1],
            self.stats, {'device': str(detector.encoder.device) if detector else '',
                         'model': self.model_name, 'labels': len(self.value('labels')),
                         'max_batch': detector.batch_size if detector else
                         self.value('max_batch'), **self.memory_backend.diagnostic_values()},
            self.worker.alive(), self.worker.stalled_sec(), self.value('watchdog_sec'),
            self.enabled)

    def close(self) -> bool:
        """Stop inference and release the model; False when a frame was left running."""
        finished = self.stop_inference()
        if finished:
            self._deactivate()
        return finished

    def destroy_node(self) -> None:
        """Stop the inference thread, destroy the node and its lifecycle state machine."""
        self.close()
        super().destroy_node()
        # rclpy leaves the state machine, which holds the node's handle and serves its
        # lifecycle services, to the garbage collector: until then the node stays on the
        # graph and a lifecycle manager's requests can go to it instead of a live node.
        self._state_machine.destroy_when_not_in_use()
