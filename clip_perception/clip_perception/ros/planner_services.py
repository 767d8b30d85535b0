"""
Planner services: `~/detect` and `~/find`.

`~/detect`: the caller's labels on a given image or a camera's latest frame.
`~/find`: the frames in the memory that best match a text.

Their callbacks are coroutines (in a reentrant callback group of their own):
each hands its work to the inference thread, the model's only user, and awaits
the answer, so no executor thread waits and frames keep arriving meanwhile.
The inference thread answers queries before its next frame, then wakes the
executor (a guard condition); it never waits for the executor, so nothing can
deadlock, and a query unanswered after QUERY_WAIT_SEC fails with a message.
"""
import threading
import time

from clip_perception.engine.detector import InferenceCancelled
from clip_perception.engine.localizers import REGION_LOCALIZERS
from clip_perception.engine.memory import NS_PER_SEC, query_label
from clip_perception.ros import messages
from clip_perception.ros.image_conversion import ImageError
from clip_perception.ros.inference_worker import Query, QueryError
from clip_perception_interfaces.srv import Detect, Find
from rclpy.callback_groups import ReentrantCallbackGroup
from rclpy.exceptions import InvalidTopicNameException
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.validate_topic_name import validate_topic_name

# A service waits this long for the inference thread's answer (a frame in progress first).
QUERY_WAIT_SEC = 30.0
MAX_TOP_K = 100
# ~/detect: most labels one request may ask for (a planner asks for a few things).
MAX_QUERY_LABELS = 100
# Requests are queued, not dropped, when a burst arrives (rclpy's default keeps 10).
SERVICE_QOS = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE,
                         durability=DurabilityPolicy.VOLATILE)


class _ExecutorTurn:
    """Awaited in a service coroutine: the executor runs other work, then resumes it."""

    def __await__(self):
        yield


class PlannerServices:
    """
    The node's ~/detect and ~/find, and the answering of their queries.

    `node`: the ClipPerceptionNode (its detector, memory, input topics, parameters,
    frame conversion and inference worker); `log`: its ThrottledLog.
    """

    def __init__(self, node, log):
        self.node, self._log = node, log
        # Coroutines in a group of their own: one pending in the default (mutually
        # exclusive) group would hold back the subscriptions until it ends.
        group = ReentrantCallbackGroup()
        node.create_service(Detect, '~/detect', self._on_detect, callback_group=group,
                            qos_profile=SERVICE_QOS)
        node.create_service(Find, '~/find', self._on_find, callback_group=group,
                            qos_profile=SERVICE_QOS)
        # Triggered by the inference thread when it answered: the executor wakes and
        # resumes the waiting service coroutines.
        self.answered = node.create_guard_condition(lambda: None, callback_group=group)

    def wake(self) -> None:
        """Wake the executor: queries were answered (or failed)."""
        self.answered.trigger()

    async def _ask_inference_thread(self, run):
        """Run `run` on the inference thread and return its result; QueryError says why not."""
        node, query = self.node, Query(run)
        if node.detector is None or not node.worker.running:
            raise QueryError(f'the node is not active (state '
                             f'{node._state_machine.current_state[1]})')
        node.worker.submit(query)
        deadline = time.monotonic() + QUERY_WAIT_SEC
        while not query.done.is_set():
            if time.monotonic() >= deadline:
                query.cancelled.set()  # the work in progress stops at its next chunk
                node.worker.withdraw(query)
                raise QueryError(f'no answer from the inference thread within '
                                 f'{QUERY_WAIT_SEC:.0f} s')
            await _ExecutorTurn()
        if query.error is not None:
            raise query.error
        return query.result

    def answer(self, query: Query, stop: threading.Event) -> None:
        """On the inference thread: run `query`, keep its result or why it failed."""
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
            self.wake()
        except Exception as error:  # a node being destroyed: nobody waits any more
            self._log.warning(('answered',), f'could not wake the executor: {error}')

    # --- ~/detect -----------------------------------------------------------------------
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
                       'score_threshold': threshold or self.node.value('score_threshold')}
            header, frame, result = await self._ask_inference_thread(
                lambda cancelled: self._detect_on_request(request, changes, cancelled))
        except QueryError as error:
            response.success, response.message = False, f'~/detect: {error}'
            self.node.get_logger().warning(response.message)
            return response
        response.detections = messages.detection_array(header, result.detections, frame.scale)
        response.classification = messages.classification(header, result.classification)
        response.success = True
        response.message = f'{len(result.detections)} detections'
        return response

    def _detect_on_request(self, request, changes: dict, cancelled: threading.Event):
        """On the inference thread: (header, frame, FrameResult) of a ~/detect request."""
        msg = request.image if request.image.data else self._latest_frame(request.camera)
        _, frame = self.node.frame_of(msg)
        result = self.node.detector.detect_query([frame.pixels], bgr=frame.bgr,
                                                 cancelled=cancelled, **changes)[0]
        return msg.header, frame, result

    def _latest_frame(self, camera: str):
        """Return the latest message of `camera` (any input when empty); QueryError if none."""
        node, latest = self.node, self.node.worker.latest()
        if camera:
            try:
                validate_topic_name(camera)
            except InvalidTopicNameException as error:
                raise QueryError(f'camera {camera!r} is not a valid topic name: '
                                 f'{str(error).splitlines()[0]}') from None
            named = {topic: topic for topic in node.input_topics}
            named.update(zip(node.value('image_topics'), node.input_topics))
            topic = named.get(camera) or named.get(node.resolve_topic_name(camera)
                                                   if camera.startswith('/') else '')
            if topic is None:
                raise QueryError(f'camera {camera!r} is not one of the input topics '
                                 f'{node.input_topics}')
            if topic not in latest:
                raise QueryError(f'no frame has arrived on {topic} yet')
            return latest[topic].msg
        if not latest:
            raise QueryError('no frame has arrived yet (and the request has no image)')
        return max(latest.values(), key=lambda parked: parked.received).msg

    # --- ~/find -------------------------------------------------------------------------
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
            found, searched = await self._ask_inference_thread(
                lambda cancelled: self._search(query, top_k, *window, request.robot,
                                               request.camera))
        except QueryError as error:
            response.success, response.message = False, f'~/find: {error}'
            self.node.get_logger().warning(response.message)
            return response
        response.matches = [messages.match(found_match) for found_match in found]
        response.success = True
        response.message = f'{len(found)} matches among {searched}'
        return response

    def _search(self, query: str, top_k: int, start_ns: int, end_ns: int, robot: str,
                camera: str):
        """On the inference thread: (the memory's best frames for `query`, what was searched)."""
        node, detector = self.node, self.node.detector
        if not detector.keeps_regions:
            raise QueryError(f'no memory with localizer {detector.settings.localizer} '
                             f'(it needs one of {", ".join(REGION_LOCALIZERS)})')
        if not node.value('memory'):
            raise QueryError('the memory is off (parameter memory)')
        classes = detector.query_embeddings(query_label(query))
        return node.memory_backend.search(classes.matrix, detector.encoder.logit_scale, top_k,
                                          start_ns, end_ns, robot, camera,
                                          node.get_clock().now().nanoseconds)
