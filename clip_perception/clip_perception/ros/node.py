"""
clip_perception node: camera images in, vision_msgs detections out.

A thin managed (lifecycle) adapter around the engine's ZeroShotDetector:

    unconfigured --configure--> inactive   parameters read and checked, publishers
    inactive     --activate-->  active     model loaded, subscriptions, inference thread
    active       --deactivate-> inactive   thread stopped, subscriptions and model
                                           released (GPU memory freed)
    inactive     --cleanup-->   unconfigured

With `autostart` (the default) `main` configures and activates it at start-up;
a transition that fails logs one `cannot start:` line and `main` exits 1.

Subscription callbacks only park the newest message of each camera. One
inference thread takes every parked message at once, converts and checks each
(a bad one is rejected alone, and a large compressed image is decoded there,
not in the executor), and runs the rest as one batch (several cameras: one
pass on the GPU); inference never works through a backlog, and each replaced
message is counted as dropped. Parameter changes are checked when they are set
and reach the detector before its next frame, without waiting for the frame in
progress. A stop waits a moment for the frame in progress, then leaves it.

Planner services: `~/detect` (the caller's labels on a given image or a camera's
latest frame) and `~/find` (the frames in the memory that best match a text).
Their callbacks are coroutines (in a reentrant callback group of their own):
each hands its work to the inference thread, the model's only user, and awaits
the answer, so no executor thread waits and frames keep arriving meanwhile.
The inference thread answers queries before its next frame, then wakes the
executor (a guard condition); it never waits for the executor, so nothing can
deadlock, and a query unanswered after QUERY_WAIT_SEC fails with a message.
The memory of frames is filled by the inference thread from the frames it
processes (parameters memory*).
"""
from dataclasses import dataclass, field, replace
import functools
import itertools
import os
import re
import signal
import sys
import threading
import time

from clip_perception.engine.detector import (HEATMAP_LOCALIZERS, InferenceCancelled,
                                             REGION_LOCALIZERS, ZeroShotDetector)
from clip_perception.engine.memory import FrameMemory, NS_PER_SEC, query_label, StoredFrame
from clip_perception.engine.model_loading import load_encoder, ModelLoadError
from clip_perception.engine.tracking import Tracker
from clip_perception.ros import messages
from clip_perception.ros.depth_3d import Depth3D, depth_topic_pairs, DepthClaims
from clip_perception.ros.diagnostics import LatencyWindow, RateMeter
from clip_perception.ros.image_conversion import (fit_to_pixel_budget, Frame,
                                                  frame_from_compressed, frame_from_raw,
                                                  ImageError)
from clip_perception.ros.log_throttle import ThrottledLog
from clip_perception.ros.package_files import resolve_model
from clip_perception.ros.parameters import (check_choices, memory_settings, PARAMETERS,
                                            STREAM_PARAMETERS, stream_settings)
from clip_perception.ros.process_memory import limit_arenas, release_free_memory
from clip_perception_interfaces.srv import Detect, Find
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import (FloatingPointRange, IntegerRange, ParameterDescriptor,
                                ParameterType, SetParametersResult)
import rclpy
from rclpy._rclpy_pybind11 import RCLError, UnknownROSArgsError
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.exceptions import InvalidTopicNameException, ParameterException
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.parameter import Parameter
from rclpy.qos import (DurabilityPolicy, HistoryPolicy, qos_profile_sensor_data, QoSProfile,
                       ReliabilityPolicy)
from rclpy.validate_topic_name import validate_topic_name
from sensor_msgs.msg import CompressedImage, Image
from std_msgs.msg import Header
from std_srvs.srv import SetBool
from vision_msgs.msg import Classification, Detection2DArray, Detection3DArray, LabelInfo

_TYPES = {
    'string': ParameterType.PARAMETER_STRING,
    'string_array': ParameterType.PARAMETER_STRING_ARRAY,
    'double': ParameterType.PARAMETER_DOUBLE,
    'double_array': ParameterType.PARAMETER_DOUBLE_ARRAY,
    'integer': ParameterType.PARAMETER_INTEGER,
    'bool': ParameterType.PARAMETER_BOOL,
}
COUNTERS = ('received', 'processed', 'dropped', 'rejected', 'paused', 'failed', 'without_3d')
# A stop waits this long for the frame in progress; after that the frame is abandoned.
STOP_WAIT_SEC = 2.0
# A service waits this long for the inference thread's answer (a frame in progress first).
QUERY_WAIT_SEC = 30.0
MAX_TOP_K = 100
# The inference thread returns freed memory to the system this often (process_memory).
TRIM_EVERY_SEC = 10.0
# Requests waiting for the inference thread; one more is refused at once ("busy").
MAX_WAITING_QUERIES = 64
# ~/detect: most labels one request may ask for (a planner asks for a few things).
MAX_QUERY_LABELS = 100
# Requests are queued, not dropped, when a burst arrives (rclpy's default keeps 10).
SERVICE_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)


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


@dataclass
class ParkedImage:
    """The newest message of one camera, waiting for the inference thread."""

    topic: str
    msg: object  # sensor_msgs Image or CompressedImage
    received: float  # time.monotonic() when it arrived
    depth: DepthClaims | None = None  # its hold on the camera's depth and camera info

    def release(self) -> None:
        if self.depth is not None:
            self.depth.release()


class _ExecutorTurn:
    """Awaited in a service coroutine: the executor runs other work, then resumes it."""

    def __await__(self):
        yield


class QueryError(Exception):
    """A service request that cannot be served; the message is the response's."""


@dataclass
class Query:
    """
    Work a service hands to the inference thread; `done` is set once it ran.

    `cancelled` is set when the caller stopped waiting: the work stops at its next
    encoder chunk (or is never started).
    """

    run: object  # (cancelled: threading.Event) -> the result, raises QueryError
    done: threading.Event = field(default_factory=threading.Event)
    cancelled: threading.Event = field(default_factory=threading.Event)
    result: object = None
    error: Exception | None = None

    def fail(self, error: Exception) -> None:
        self.error = error
        self.done.set()


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
        self._publishers_out = []
        self._pending: dict[str, ParkedImage] = {}
        self._latest: dict[str, ParkedImage] = {}  # per camera, for ~/detect
        self._queries: list[Query] = []
        self._tracking = None  # TrackerSettings while tracking is on
        self._trackers: dict[str, Tracker] = {}  # per camera
        self._track_ids = itertools.count(1)
        self.memory = FrameMemory()
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._worker = None
        self._next_settings = None  # set while a parameter change waits for the next frame
        self._settings_lock = threading.Lock()
        self.counters = dict.fromkeys(COUNTERS, 0)
        self._input_rate, self._output_rate = RateMeter(), RateMeter()
        self._latency, self._engine_time = LatencyWindow(), LatencyWindow()
        self._log = ThrottledLog(self.get_logger())
        self._depth = Depth3D(self, self._log, functools.partial(self._count, 'without_3d'))
        self._next_trim = 0.0  # when the inference thread next returns freed memory
        # Since when frames wait for the inference thread (None: none waits): the watchdog.
        self._waiting_since: float | None = None
        # Last: a refused start-up value raises here, and rclpy then destroys this node.
        for spec in PARAMETERS:
            self.declare_parameter(spec.name, spec.default, _descriptor(spec))
        self._read_runtime_switches()
        self.add_on_set_parameters_callback(self._validate_parameters)
        self.add_post_set_parameters_callback(self._apply_parameters)
        self.create_service(SetBool, '~/enable', self._on_enable)
        # Coroutines in a group of their own: one pending in the default (mutually
        # exclusive) group would hold back the subscriptions until it ends.
        planner = ReentrantCallbackGroup()
        self.create_service(Detect, '~/detect', self._on_detect, callback_group=planner,
                            qos_profile=SERVICE_QOS)
        self.create_service(Find, '~/find', self._on_find, callback_group=planner,
                            qos_profile=SERVICE_QOS)
        # Triggered by the inference thread when it answered: the executor wakes and
        # resumes the waiting service coroutines.
        self._answered = self.create_guard_condition(lambda: None, callback_group=planner)
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        self.create_timer(1.0, self._publish_diagnostics)

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
            self._depth_pairs = depth_topic_pairs(self._value('depth_topics'),
                                                  self._value('camera_info_topics'),
                                                  len(self.input_topics))
        except (ValueError, InvalidTopicNameException) as error:
            return self._cannot_start(error)
        self.detections_pub = self.create_lifecycle_publisher(
            Detection2DArray, 'detections', 10)
        self.classification_pub = self.create_lifecycle_publisher(
            Classification, 'classification', 10)
        self.label_info_pub = self.create_lifecycle_publisher(LabelInfo, 'label_info', QoSProfile(
            depth=1, reliability=ReliabilityPolicy.RELIABLE,
            durability=DurabilityPolicy.TRANSIENT_LOCAL))
        self.debug_pub = self.create_lifecycle_publisher(Image, '~/debug_image',
                                                         qos_profile_sensor_data)
        self._publishers_out = [self.detections_pub, self.classification_pub,
                                self.label_info_pub, self.debug_pub]
        # Only where they can publish: heatmaps with a heatmap localizer, 3D with depth.
        self.heatmap_pub = self.detections_3d_pub = None
        if self._value('localizer') in HEATMAP_LOCALIZERS:
            self.heatmap_pub = self.create_lifecycle_publisher(Image, '~/heatmap',
                                                               qos_profile_sensor_data)
            self._publishers_out.append(self.heatmap_pub)
        if self._depth_pairs:
            self.detections_3d_pub = self.create_lifecycle_publisher(
                Detection3DArray, 'detections_3d', 10)
            self._publishers_out.append(self.detections_3d_pub)
        self._depth.publisher = self.detections_3d_pub
        return super().on_configure(state)

    @_reported
    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            settings, tracking = stream_settings(self._values(STREAM_PARAMETERS))
            encoder = self._given_encoder
            if encoder is None:
                encoder = load_encoder(resolve_model(self._value('model')),
                                       self._value('device'), self._value('precision'),
                                       settings.localizer)
            self.detector = ZeroShotDetector(encoder, settings)
        except (ModelLoadError, ValueError) as error:
            return self._cannot_start(error)
        with self._settings_lock:
            self._next_settings = None  # the detector was just built from the parameters
        self._tracking = tracking
        self._trackers.clear()  # ids go on counting: an id never names two objects
        self.model_name = getattr(encoder, 'name', '') or self._value('model')
        result = super().on_activate(state)  # the publishers first: frames may come at once
        # A new event per thread: a thread left running by an earlier stop keeps its own,
        # set one, and publishes nothing even after this activation.
        self._stop = threading.Event()
        self._worker = threading.Thread(target=self._inference_loop, args=(self._stop,),
                                        name='clip_inference', daemon=True)
        self._waiting_since = None
        self._worker.start()
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
        self._destroy_publishers()
        return super().on_cleanup(state)

    @_reported
    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        self._destroy_publishers()
        return TransitionCallbackReturn.SUCCESS

    @_reported
    def on_error(self, state: LifecycleState) -> TransitionCallbackReturn:
        self._deactivate()
        self._destroy_publishers()
        return TransitionCallbackReturn.SUCCESS

    def _cannot_start(self, error: Exception) -> TransitionCallbackReturn:
        self.get_logger().fatal(f'cannot start: {error}')
        return TransitionCallbackReturn.FAILURE

    def _deactivate(self) -> None:
        self.stop_inference()
        for subscription in self._inputs:
            self.destroy_subscription(subscription)
        self._inputs.clear()
        with self._wake:
            for parked in self._pending.values():
                parked.release()
            self._pending.clear()
            self._latest.clear()
            queries, self._queries = self._queries, []
        for query in queries:
            query.fail(QueryError('the node was deactivated'))
        if queries:  # wake the executor to resume their coroutines
            self._answered.trigger()
        if self.detector is not None and self._given_encoder is None:
            self.detector.encoder.release()  # and the CUDA cache with it
        self.detector = None

    def _destroy_publishers(self) -> None:
        for publisher in self._publishers_out:
            self.destroy_lifecycle_publisher(publisher)
        self._publishers_out.clear()
        self.heatmap_pub = self.detections_3d_pub = self._depth.publisher = None

    def stop_inference(self, wait_sec: float = STOP_WAIT_SEC) -> bool:
        """
        Stop the inference thread; True once it has ended.

        A frame in progress is cancelled at its next encoder chunk and its results
        are not published; after `wait_sec` the thread is left to finish alone
        (False), and nothing it does later is published.
        """
        asked_before = self._stop.is_set()  # a frame left once is not waited for again
        self._stop.set()
        if self.detector is not None:
            self.detector.cancel()
        with self._wake:
            self._wake.notify_all()
        if self._worker is not None:
            self._worker.join(timeout=0.0 if asked_before else wait_sec)
            if self._worker.is_alive():
                return False
            self._worker = None
        return True

    # --- parameters -----------------------------------------------------------------
    def _value(self, name: str):
        return self.get_parameter(name).value

    def _values(self, names) -> dict:
        return {name: self._value(name) for name in names}

    def _read_runtime_switches(self) -> None:
        self._enabled = self._value('enabled')
        self._publish_debug = self._value('publish_debug_image')
        self._max_image_pixels = self._value('max_image_pixels')
        self._memory_on = self._value('memory')
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
        settings = stream_settings(self._values(STREAM_PARAMETERS))
        with self._settings_lock:  # the inference thread takes it before its next frame
            self._next_settings = settings
        if {'labels', 'score_threshold'} & names and self.detector is not None:
            self._publish_label_info()
        # throttled: a parameter storm must not become a log storm
        self._log.info(('updated',), f'updated: {", ".join(sorted(names))}')

    def _take_new_settings(self) -> None:
        """Give the detector the latest parameter values (prompts are encoded here, once)."""
        with self._settings_lock:
            settings, self._next_settings = self._next_settings, None
        if settings is None:
            return
        settings, tracking = settings
        if tracking != self._tracking:
            self._tracking = tracking
            if tracking is None:
                self._trackers.clear()
            for tracker in self._trackers.values():
                tracker.settings = tracking
        current = self.detector.settings
        changed = {f: getattr(settings, f) for f in settings.__dataclass_fields__
                   if getattr(settings, f) != getattr(current, f)}
        try:
            self.detector.update(**changed)
        except Exception as error:  # the encoder may refuse prompts: keep the old settings
            self._log.error(('parameter change', type(error).__name__),
                            f'parameter change not applied: {type(error).__name__}: {error}')

    def _on_enable(self, request, response):
        result = self.set_parameters([Parameter('enabled', value=bool(request.data))])[0]
        response.success = result.successful
        response.message = 'inference enabled' if request.data else 'inference paused'
        return response

    # --- inputs ---------------------------------------------------------------------
    def _input_topic_names(self) -> list[str]:
        """Resolve the input topics; InvalidTopicNameException for a name ROS refuses."""
        topics = list(self._value('image_topics'))
        if not topics:
            raise ValueError('image_topics must name at least one topic')
        for topic in topics:
            validate_topic_name(topic)  # resolve_topic_name's own error is a bare RCLError
        suffix = '/compressed' if self._value('image_transport') == 'compressed' else ''
        return [self.resolve_topic_name(topic).rstrip('/') + suffix for topic in topics]

    def _subscribe_inputs(self) -> None:
        reliability = (ReliabilityPolicy.RELIABLE if self._value('image_reliability') == 'reliable'
                       else ReliabilityPolicy.BEST_EFFORT)
        qos = QoSProfile(depth=1, history=HistoryPolicy.KEEP_LAST, reliability=reliability,
                         durability=DurabilityPolicy.VOLATILE)
        msg_type = CompressedImage if self._value('image_transport') == 'compressed' else Image
        self._inputs += [self.create_subscription(msg_type, topic,
                                                  lambda msg, t=topic: self._park(t, msg), qos)
                         for topic in self.input_topics]

    def _park(self, topic: str, msg) -> None:
        received = time.monotonic()
        self._input_rate.tick(received)
        self.counters['received'] += 1
        if not self._enabled:
            self.counters['paused'] += 1
            return
        parked = ParkedImage(topic, msg, received, self._depth.claim(topic, msg.header))
        with self._wake:
            replaced = self._pending.get(topic)
            if replaced is not None:
                self.counters['dropped'] += 1
                replaced.release()
            self._pending[topic] = self._latest[topic] = parked
            if self._waiting_since is None:
                self._waiting_since = received
            self._wake.notify()

    def _frame_of(self, msg) -> tuple[Frame, Frame]:
        """
        Convert an image message for the detector: (as decoded, as the detector gets it).

        ImageError or ValueError (a frame asking for more than max_windows) say why not.
        """
        if isinstance(msg, CompressedImage):
            converted = frame_from_compressed(msg.format, msg.data, self._max_image_pixels)
        else:
            converted = frame_from_raw(msg.height, msg.width, msg.encoding, msg.step, msg.data)
        frame = fit_to_pixel_budget(converted, self._max_image_pixels)
        self.detector.check_frame(*frame.pixels.shape[:2])
        return converted, frame

    def _convert(self, parked: ParkedImage) -> Frame | None:
        """Convert a parked message into a frame for the detector; None when it is rejected."""
        try:
            converted, frame = self._frame_of(parked.msg)
        except (ImageError, ValueError) as error:
            self.counters['rejected'] += 1
            kind = getattr(error, 'kind', 'size')  # an ImageError's, or check_frame's
            self._log.warning(('rejected', parked.topic, kind),
                              f'{parked.topic}: image rejected: {error}')
            return None
        if frame.scale != converted.scale:
            height, width = converted.pixels.shape[:2]
            self._log.warning(('downscaled', parked.topic),
                              f'{parked.topic}: {width}×{height} image exceeds '
                              f'max_image_pixels={self._max_image_pixels}: downscaled for '
                              'inference (boxes stay in input pixels)')
        return frame

    # --- inference ------------------------------------------------------------------
    def _count(self, counter: str, amount: int = 1) -> None:
        self.counters[counter] += amount

    def _inference_loop(self, stop: threading.Event) -> None:
        """
        Answer queries and process frames until `stop`; survive anything a frame raises.

        Whatever a frame or a query raises (a defect, a full memory, a publisher gone)
        is counted and logged, and the loop goes on with the next one: a dead thread
        would leave a node that looks healthy and never answers again.
        """
        queries = []
        try:
            while not stop.is_set():
                with self._wake:
                    self._wake.wait_for(lambda: self._pending or self._queries or stop.is_set(),
                                        timeout=0.5)
                    queries, self._queries = self._queries, []
                    parked = list(self._pending.values())
                    self._pending.clear()
                while queries:  # a planner waits for these: before the next frame
                    self._answer(queries.pop(0), stop)
                if parked and not stop.is_set():
                    try:
                        self._process(parked, stop)
                    except InferenceCancelled:
                        raise
                    except Exception as error:  # counted, logged, next frame
                        self._frame_failed('processing', error)
                    finally:
                        for item in parked:
                            item.release()
                        self._made_progress()
                if time.monotonic() >= self._next_trim:  # freed memory back to the system
                    release_free_memory()
                    self._next_trim = time.monotonic() + TRIM_EVERY_SEC
        except InferenceCancelled:
            pass  # stopping
        finally:
            with self._wake:
                queries, self._queries = queries + self._queries, []
            for query in queries:
                query.fail(QueryError('the node is stopping'))
            if queries:
                self._answered.trigger()

    def _made_progress(self) -> None:
        """Frames were handled: the watchdog counts from the oldest one still waiting."""
        with self._wake:
            self._waiting_since = min((p.received for p in self._pending.values()),
                                      default=None)

    def stalled_sec(self) -> float:
        """Seconds frames have waited without the inference thread finishing one (0: fine)."""
        since = self._waiting_since
        return 0.0 if since is None else time.monotonic() - since

    def _frame_failed(self, stage: str, error: Exception) -> None:
        self.counters['failed'] += 1
        self._log.error(('failed', stage, type(error).__name__),
                        f'{stage} failed: {type(error).__name__}: {error}')

    def _process(self, parked: list[ParkedImage], stop: threading.Event) -> None:
        self._take_new_settings()
        ready = [(p, frame) for p in parked if (frame := self._convert(p)) is not None]
        if not ready:
            return
        remember = [self._memory_due(item) for item, _ in ready]
        started = time.monotonic()
        results = self._detect([frame for _, frame in ready], remember)
        self._engine_time.add(time.monotonic() - started)
        for (item, frame), result in zip(ready, results):
            if result is None:
                continue
            if stop.is_set() or not self.context.ok():
                return  # stopping: nothing more is published
            try:
                if self._tracking is not None:
                    result = replace(result, detections=self._tracker(item.topic).update(
                        result.detections, result.uncertain))
                if result.regions is not None:
                    self._remember(item, frame, result.regions)
                self._publish(item, frame, result)
            except Exception as error:  # this frame is lost, the next ones not
                if stop.is_set() or not self.context.ok():
                    return  # a context shut down by a signal mid-publish: nothing to report
                self._frame_failed('publishing', error)

    def _detect(self, frames: list[Frame], remember: list[bool]) -> list:
        """
        Detect in each frame: its FrameResult, or None when inference failed for it.

        `remember`: per frame, keep its regions for the memory. Failures are counted
        and logged. A batch that fails is retried one frame at a time, so one camera's
        bad frame does not cost the others theirs.
        """
        try:
            return self.detector.detect_batch([f.pixels for f in frames],
                                              bgr=[f.bgr for f in frames], keep_regions=remember)
        except InferenceCancelled:
            raise
        except Exception as error:  # keep running: log, count, next frame
            if len(frames) > 1:
                return [self._detect([frame], [keep])[0]
                        for frame, keep in zip(frames, remember)]
            self._frame_failed('inference', error)
            return [None]

    def _publish(self, parked: ParkedImage, frame: Frame, result) -> None:
        """Publish one frame's outputs: detections, classification, 3D and debug images."""
        header = parked.msg.header
        detections = messages.detection_array(header, result.detections, frame.scale)
        self.detections_pub.publish(detections)
        self.classification_pub.publish(messages.classification(header, result.classification))
        boxes_3d = self._depth.publish(parked.topic, parked.msg, parked.depth, detections,
                                       self._value('depth_slop'))
        if self._publish_debug and self.debug_pub.get_subscription_count() > 0:
            self.debug_pub.publish(messages.debug_image(
                header, frame.pixels, frame.bgr,
                messages.detection_array(header, result.detections), boxes_3d))
        if (self._publish_debug and result.heatmaps is not None and self.heatmap_pub
                and self.heatmap_pub.get_subscription_count() > 0):
            self.heatmap_pub.publish(messages.heatmap_image(
                header, frame.pixels, frame.bgr, result.heatmaps, result.heatmap_labels))
        self._latency.add(time.monotonic() - parked.received)
        self._output_rate.tick()
        self.counters['processed'] += 1

    def _tracker(self, topic: str) -> Tracker:
        if topic not in self._trackers:
            self._trackers[topic] = Tracker(self._tracking, self._track_ids)
        return self._trackers[topic]

    # --- memory and planner services -------------------------------------------------
    def _memory_due(self, parked: ParkedImage) -> bool:
        return (self._memory_on and self.detector.settings.localizer in REGION_LOCALIZERS
                and self.memory.due(parked.topic, self.get_clock().now().nanoseconds))

    def _remember(self, parked: ParkedImage, frame: Frame, regions) -> None:
        """Store a frame; its period and age count on the node's clock, not its stamp."""
        header = parked.msg.header
        self.memory.add(StoredFrame(parked.topic, messages.stamp_ns(header), header.frame_id,
                                    regions.scaled(frame.scale)),
                        self.get_clock().now().nanoseconds)

    async def _ask_inference_thread(self, run):
        """Run `run` on the inference thread and return its result; QueryError says why not."""
        query = Query(run)
        with self._wake:
            if self.detector is None or self._worker is None or self._stop.is_set():
                raise QueryError(f'the node is not active (state '
                                 f'{self._state_machine.current_state[1]})')
            if len(self._queries) >= MAX_WAITING_QUERIES:
                raise QueryError(f'busy: {len(self._queries)} requests are waiting, try again')
            self._queries.append(query)
            self._wake.notify()
        deadline = time.monotonic() + QUERY_WAIT_SEC
        while not query.done.is_set():
            if time.monotonic() >= deadline:
                query.cancelled.set()  # the work in progress stops at its next chunk
                with self._wake:
                    if query in self._queries:
                        self._queries.remove(query)
                raise QueryError(f'no answer from the inference thread within '
                                 f'{QUERY_WAIT_SEC:.0f} s')
            await _ExecutorTurn()
        if query.error is not None:
            raise query.error
        return query.result

    def _answer(self, query: Query, stop: threading.Event) -> None:
        try:
            if query.cancelled.is_set():
                raise QueryError('the caller stopped waiting')
            query.result = query.run(query.cancelled)
        except InferenceCancelled:
            if stop.is_set():
                query.fail(QueryError('the node is stopping'))
                raise
            query.error = QueryError('cancelled: the caller stopped waiting')
        except QueryError as error:
            query.error = error
        except (ImageError, ValueError) as error:  # bad image, invalid labels
            query.error = QueryError(str(error))
        except Exception as error:  # the node keeps running; the caller learns why
            query.error = QueryError(f'failed: {type(error).__name__}: {error}')
        query.done.set()
        try:
            self._answered.trigger()
        except Exception as error:  # a node being destroyed: nobody waits any more
            self._log.warning(('answered',), f'could not wake the executor: {error}')

    async def _on_detect(self, request, response):
        try:
            labels = tuple(request.labels)
            if len(labels) > MAX_QUERY_LABELS:
                raise QueryError(f'at most {MAX_QUERY_LABELS} labels per request, got '
                                 f'{len(labels)}')
            threshold = float(request.score_threshold)
            if not 0.0 <= threshold <= 1.0:  # NaN too
                raise QueryError(f"score_threshold must lie in (0, 1] (0: the node's), "
                                 f'got {threshold}')
            # 0: the parameter's, not the detector's (with tracking that one is lower)
            changes = {'labels': labels,
                       'score_threshold': threshold or self._value('score_threshold')}
            header, frame, result = await self._ask_inference_thread(
                lambda cancelled: self._detect_on_request(request, changes, cancelled))
        except QueryError as error:
            response.success, response.message = False, f'~/detect: {error}'
            self.get_logger().warning(response.message)
            return response
        response.detections = messages.detection_array(header, result.detections, frame.scale)
        response.classification = messages.classification(header, result.classification)
        response.success = True
        response.message = f'{len(result.detections)} detections'
        return response

    def _detect_on_request(self, request, changes: dict, cancelled: threading.Event):
        """On the inference thread: (header, frame, FrameResult) of a ~/detect request."""
        if request.image.data:
            msg = request.image
        else:
            msg = self._latest_frame(request.camera)
        _, frame = self._frame_of(msg)
        result = self.detector.detect_query([frame.pixels], bgr=frame.bgr, cancelled=cancelled,
                                            **changes)[0]
        return msg.header, frame, result

    def _latest_frame(self, camera: str):
        """Return the latest message of `camera` (any input when empty); QueryError if none."""
        with self._wake:
            latest = dict(self._latest)
        if camera:
            try:
                validate_topic_name(camera)
            except InvalidTopicNameException as error:
                raise QueryError(f'camera {camera!r} is not a valid topic name: '
                                 f'{str(error).splitlines()[0]}') from None
            named = {topic: topic for topic in self.input_topics}
            named.update(zip(self._value('image_topics'), self.input_topics))
            topic = named.get(camera) or named.get(self.resolve_topic_name(camera)
                                                   if camera.startswith('/') else '')
            if topic is None:
                raise QueryError(f'camera {camera!r} is not one of the input topics '
                                 f'{self.input_topics}')
            if topic not in latest:
                raise QueryError(f'no frame has arrived on {topic} yet')
            return latest[topic].msg
        if not latest:
            raise QueryError('no frame has arrived yet (and the request has no image)')
        return max(latest.values(), key=lambda parked: parked.received).msg

    async def _on_find(self, request, response):
        try:
            query, top_k = request.query.strip(), request.top_k
            if not query:
                raise QueryError('query must not be blank')
            if not 1 <= top_k <= MAX_TOP_K:
                raise QueryError(f'top_k must lie in [1, {MAX_TOP_K}], got {top_k}')
            window = [t.sec * NS_PER_SEC + t.nanosec for t in (request.start, request.end)]
            if all(window) and window[0] > window[1]:
                raise QueryError('start is after end')
            found = await self._ask_inference_thread(
                lambda cancelled: self._search(query, top_k, *window))
        except QueryError as error:
            response.success, response.message = False, f'~/find: {error}'
            self.get_logger().warning(response.message)
            return response
        response.matches = [messages.match(found_match) for found_match in found]
        response.success = True
        response.message = f'{len(found)} matches among {len(self.memory)} stored frames'
        return response

    def _search(self, query: str, top_k: int, start_ns: int, end_ns: int):
        """On the inference thread: the memory's best frames for `query`."""
        localizer = self.detector.settings.localizer
        if localizer not in REGION_LOCALIZERS:
            raise QueryError(f'no memory with localizer {localizer} (it needs one of '
                             f'{", ".join(REGION_LOCALIZERS)})')
        if not self._memory_on:
            raise QueryError('the memory is off (parameter memory)')
        self.memory.forget(self.get_clock().now().nanoseconds)  # memory_max_age, also idle
        if not len(self.memory):
            raise QueryError('no frame is stored yet')
        classes = self.detector.query_embeddings(query_label(query))
        return self.memory.search(classes.matrix, self.detector.encoder.logit_scale, top_k,
                                  start_ns, end_ns)

    # --- outputs --------------------------------------------------------------------
    def _publish_label_info(self) -> None:
        values = self._values(('labels', 'score_threshold'))
        header = Header()
        header.stamp = self.get_clock().now().to_msg()
        self.label_info_pub.publish(
            messages.label_info(header, values['labels'], values['score_threshold']))

    def diagnostic_status(self) -> DiagnosticStatus:
        c = self.counters
        detector = self.detector
        state = self._state_machine.current_state[1]
        values = {
            'state': state,
            'input_rate_hz': f'{self._input_rate.rate():.2f}',
            'processed_rate_hz': f'{self._output_rate.rate():.2f}',
            **{f'frames_{name}': c[name] for name in COUNTERS},
            'latency_p50_ms': f'{self._latency.percentile_ms(50):.1f}',
            'latency_p95_ms': f'{self._latency.percentile_ms(95):.1f}',
            'engine_time_p50_ms': f'{self._engine_time.percentile_ms(50):.1f}',
            'device': str(detector.encoder.device) if detector else '',
            'model': self.model_name,
            'labels': len(self._value('labels')),
            'max_batch': detector.batch_size if detector else self._value('max_batch'),
            'enabled': self._enabled,
        }
        stalled = self.stalled_sec()
        if stalled:
            values['waiting_sec'] = f'{stalled:.1f}'
        if state != 'active':
            level, message = DiagnosticStatus.OK, state
        elif self._worker is None or not self._worker.is_alive():
            level, message = DiagnosticStatus.ERROR, 'the inference thread has ended'
        elif stalled > self._value('watchdog_sec'):
            level, message = DiagnosticStatus.ERROR, (
                f'no frame handled for {stalled:.0f} s while frames arrive (watchdog_sec '
                f'{self._value("watchdog_sec"):g}): inference is stalled')
        elif not self._enabled:
            level, message = DiagnosticStatus.OK, 'paused'
        elif c['failed']:
            level, message = DiagnosticStatus.ERROR, f'{c["failed"]} frames failed in inference'
        elif c['rejected']:
            level, message = DiagnosticStatus.WARN, f'{c["rejected"]} frames rejected'
        else:
            level, message = DiagnosticStatus.OK, 'running'
        return DiagnosticStatus(
            level=level, name=f'{self.get_fully_qualified_name().lstrip("/")}: inference',
            message=message, hardware_id=values['device'],
            values=[KeyValue(key=k, value=str(v)) for k, v in values.items()])

    def _publish_diagnostics(self) -> None:
        array = DiagnosticArray(status=[self.diagnostic_status()])
        array.header.stamp = self.get_clock().now().to_msg()
        self.diagnostics_pub.publish(array)

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


def rcl_reason(error: Exception) -> str:
    """Return the reason in an rcl error, without the C source locations after it."""
    if isinstance(error, UnknownROSArgsError):  # its text is the list of arguments
        return f'unknown ROS arguments {str(error).strip("[]")}'
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    text = text.removeprefix('failed to initialize rcl: ')
    return re.sub(r'(, at [^,]*\.c:\d+)+$', '', text)


def main(args=None) -> int:
    """
    Run the node; exit 0 on SIGINT/SIGTERM (what `ros2 launch` sends), 1 when it cannot start.

    A stop that finds a frame still in inference after STOP_WAIT_SEC leaves it and
    ends the process at once (os._exit): a thread still inside torch at interpreter
    exit can abort the process.
    """
    limit_arenas()  # before rclpy and the node start their threads
    try:
        rclpy.init(args=args)  # SIGINT and SIGTERM shut the context down: spin returns
    except (RCLError, UnknownROSArgsError) as error:  # a broken parameter file, say
        rclpy.logging.get_logger('clip_perception').fatal(
            f'cannot start: the ROS arguments could not be read: {rcl_reason(error)}')
        return 1
    executor = SingleThreadedExecutor()  # before the node: a signal may come at any time
    node = None
    code, finished = 0, True
    try:
        node = ClipPerceptionNode()
        executor.add_node(node)
        if node.get_parameter('autostart').value and not node.start():
            code = 1 if rclpy.ok() else 0  # not ok: a stop came while it was starting
        else:
            executor.spin()
    except ParameterException as error:  # a start-up value of the wrong type or range
        rclpy.logging.get_logger('clip_perception').fatal(f'cannot start: {error}')
        code = 1
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except Exception:
        if rclpy.ok():
            raise
        # A signal shut the context down while the node was starting: nothing to report.
    finally:
        for stop_signal in (signal.SIGINT, signal.SIGTERM):  # one stop at a time
            signal.signal(stop_signal, signal.SIG_IGN)
        if node is not None:
            finished = node.close()
            if not finished:
                node.get_logger().info('stopped with a frame still in inference: it is left')
            node.destroy_node()
        executor.shutdown()
        rclpy.try_shutdown()
    if not finished:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == '__main__':
    sys.exit(main())
