"""
What the inference thread does with a batch of parked frames.

    parameter changes reach the detector (before the frame, never during one)
    -> each message converted and checked (a bad one is rejected alone)
    -> one batched detection (several cameras: one pass)
    -> per frame: tracking, the memory of frames, publishing

A frame whose inference or publishing fails is counted and logged; the others
in its batch, and the next frames, go on.
"""
from dataclasses import replace
import itertools
import threading
import time

from clip_perception.engine.detector import InferenceCancelled
from clip_perception.engine.memory import StoredFrame
from clip_perception.engine.tracking import Tracker
from clip_perception.ros import messages
from clip_perception.ros.image_conversion import (fit_to_pixel_budget, Frame,
                                                  frame_from_compressed, frame_from_raw,
                                                  ImageError)
from sensor_msgs.msg import CompressedImage


class FramePipeline:
    """
    Conversion, detection, tracking, memory and publishing of parked frames.

    `node`: the ClipPerceptionNode (its detector, memory, switches and clock);
    `outputs`: its Outputs; `log`: its ThrottledLog.
    """

    def __init__(self, node, outputs, log):
        self.node, self.outputs, self.stats, self._log = node, outputs, outputs.stats, log
        self.tracking = None  # TrackerSettings while tracking is on
        self._trackers: dict[str, Tracker] = {}  # per camera
        self._track_ids = itertools.count(1)
        self._next_settings = None  # set while a parameter change waits for the next frame
        self._settings_lock = threading.Lock()

    def start(self, tracking) -> None:
        """Begin with a detector just built from the parameters (on activate)."""
        with self._settings_lock:
            self._next_settings = None
        self.tracking = tracking
        self._trackers.clear()  # ids go on counting: an id never names two objects

    def offer(self, settings) -> None:
        """Hand (DetectorSettings, TrackerSettings | None) to the next frame."""
        with self._settings_lock:
            self._next_settings = settings

    def frame_of(self, msg) -> tuple[Frame, Frame]:
        """
        Convert an image message for the detector: (as decoded, as the detector gets it).

        ImageError or ValueError (a frame asking for more work than allowed) say why not.
        """
        budget = self.node.max_image_pixels
        if isinstance(msg, CompressedImage):
            converted = frame_from_compressed(msg.format, msg.data, budget)
        else:
            converted = frame_from_raw(msg.height, msg.width, msg.encoding, msg.step, msg.data)
        frame = fit_to_pixel_budget(converted, budget)
        self.node.detector.check_frame(*frame.pixels.shape[:2])
        return converted, frame

    def failed(self, stage: str, error: Exception) -> None:
        self.stats.count('failed')
        self._log.error(('failed', stage, type(error).__name__),
                        f'{stage} failed: {type(error).__name__}: {error}')

    # --- on the inference thread --------------------------------------------------------
    def process(self, parked: list, stop: threading.Event) -> None:
        self._take_new_settings()
        ready = [(p, frame) for p in parked if (frame := self._convert(p)) is not None]
        if not ready:
            return
        remember = [self._memory_due(item) for item, _ in ready]
        started = time.monotonic()
        results = self._detect([frame for _, frame in ready], remember)
        self.stats.engine_time.add(time.monotonic() - started)
        for (item, frame), result in zip(ready, results):
            if result is None:
                continue
            if stop.is_set() or not self.node.context.ok():
                return  # stopping: nothing more is published
            try:
                if self.tracking is not None:
                    result = replace(result, detections=self._tracker(item.topic).update(
                        result.detections, result.uncertain))
                if result.regions is not None:
                    self._remember(item, frame, result.regions)
                self.outputs.publish(item, frame, result, self.node.publish_debug,
                                     self.node.value('depth_slop'))
            except Exception as error:  # this frame is lost, the next ones not
                if stop.is_set() or not self.node.context.ok():
                    return  # a context shut down by a signal mid-publish: nothing to report
                self.failed('publishing', error)

    def _take_new_settings(self) -> None:
        """Give the detector the latest parameter values (prompts are encoded here, once)."""
        with self._settings_lock:
            settings, self._next_settings = self._next_settings, None
        if settings is None:
            return
        settings, tracking = settings
        if tracking != self.tracking:
            self.tracking = tracking
            if tracking is None:
                self._trackers.clear()
            for tracker in self._trackers.values():
                tracker.settings = tracking
        detector = self.node.detector
        changed = {f: getattr(settings, f) for f in settings.__dataclass_fields__
                   if getattr(settings, f) != getattr(detector.settings, f)}
        try:
            detector.update(**changed)
        except Exception as error:  # the encoder may refuse prompts: keep the old settings
            self._log.error(('parameter change', type(error).__name__),
                            f'parameter change not applied: {type(error).__name__}: {error}')

    def _convert(self, parked) -> Frame | None:
        """Convert a parked message into a frame for the detector; None when it is rejected."""
        try:
            converted, frame = self.frame_of(parked.msg)
        except (ImageError, ValueError) as error:
            self.stats.count('rejected')
            kind = getattr(error, 'kind', 'size')  # an ImageError's, or check_frame's
            self._log.warning(('rejected', parked.topic, kind),
                              f'{parked.topic}: image rejected: {error}')
            return None
        if frame.scale != converted.scale:
            height, width = converted.pixels.shape[:2]
            self._log.warning(('downscaled', parked.topic),
                              f'{parked.topic}: {width}×{height} image exceeds '
                              f'max_image_pixels={self.node.max_image_pixels}: downscaled for '
                              'inference (boxes stay in input pixels)')
        return frame

    def _detect(self, frames: list[Frame], remember: list[bool]) -> list:
        """
        Detect in each frame: its FrameResult, or None when inference failed for it.

        `remember`: per frame, keep its regions for the memory. A batch that fails is
        retried one frame at a time, so one camera's bad frame does not cost the
        others theirs.
        """
        try:
            return self.node.detector.detect_batch(
                [f.pixels for f in frames], bgr=[f.bgr for f in frames], keep_regions=remember)
        except InferenceCancelled:
            raise
        except Exception as error:  # keep running: log, count, next frame
            if len(frames) > 1:
                return [self._detect([frame], [keep])[0]
                        for frame, keep in zip(frames, remember)]
            self.failed('inference', error)
            return [None]

    def _tracker(self, topic: str) -> Tracker:
        if topic not in self._trackers:
            self._trackers[topic] = Tracker(self.tracking, self._track_ids)
        return self._trackers[topic]

    def _memory_due(self, parked) -> bool:
        node = self.node
        return (node.memory_on and node.detector.keeps_regions
                and node.memory.due(parked.topic, node.get_clock().now().nanoseconds))

    def _remember(self, parked, frame: Frame, regions) -> None:
        """Store a frame; its period and age count on the node's clock, not its stamp."""
        header = parked.msg.header
        self.node.memory_backend.remember(
            StoredFrame(parked.topic, messages.stamp_ns(header), header.frame_id,
                        regions.scaled(frame.scale)), self.node.get_clock().now().nanoseconds)
