"""
Where the node's memory of frames lives: its own ring, or a memory store.

With `memory_store` empty (the default) frames go to the in-process ring
(engine.memory.FrameMemory) and ~/find searches it. With a store URI they go,
through a writer thread that never blocks inference (engine.store_writer), to
Milvus (engine.memory_store): a Lite file on the robot or a server shared by a
fleet; ~/find then searches the store, filtered by robot and camera. When the
store is away, frames are dropped (counted in /diagnostics, a throttled log
line), detection goes on and the writer reconnects.
"""
from clip_perception.engine.memory import FrameMemory, Match, StoredFrame
from clip_perception.engine.memory_store import milvus_uri, MilvusStore, StoreSettings
from clip_perception.engine.store_writer import StoreWriter
from clip_perception.ros.inference_worker import QueryError


def robot_name(parameter: str, namespace: str, node_name: str) -> str:
    """Name this robot in a store: the parameter, else the namespace, else the node's name."""
    return parameter or namespace.strip('/') or node_name


class MemoryBackend:
    """The ring (`ring`, always there: it also paces storage per camera) and the store."""

    def __init__(self, ring: FrameMemory, log):
        self.ring, self._log = ring, log
        self.writer: StoreWriter | None = None
        self.uri = self.robot = ''
        self._failures_logged = 0

    @staticmethod
    def check(uri: str) -> None:
        """Raise ValueError when `uri` is no memory_store (empty is: the ring)."""
        if uri:
            milvus_uri(uri)

    def start(self, settings: StoreSettings, dim: int) -> None:
        """Write to the store of `settings` (uri empty: the ring); `dim`: the embedding size."""
        self.close()
        self.robot = settings.robot
        if not settings.uri:
            return
        self.uri = settings.uri
        self.writer = StoreWriter(lambda: MilvusStore(settings, dim))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def remember(self, frame: StoredFrame, clock_ns: int) -> None:
        if self.writer is None:
            self.ring.add(frame, clock_ns)
            return
        self.ring.stored(frame.camera, clock_ns)  # paces storage (memory_period)
        self.writer.put(frame, clock_ns)

    def search(self, class_matrix, logit_scale: float, top_k: int, start_ns: int, end_ns: int,
               robot: str, camera: str, clock_ns: int) -> tuple[list[Match], str]:
        """Return (matches, what was searched, for the reply); QueryError when it cannot."""
        if self.writer is None:
            self.ring.forget(clock_ns)  # memory_max_age, also while idle
            if not len(self.ring):
                raise QueryError('no frame is stored yet')
            found = [] if robot not in ('', self.robot) else self.ring.search(
                class_matrix, logit_scale, top_k, start_ns, end_ns, camera)
            return found, f'{len(self.ring)} stored frames'
        store = self.writer.store()
        if store is None:
            raise QueryError(f'the memory store {self.uri} is away '
                             f'({self.writer.state.last_error or "not opened yet"})')
        found = store.search(class_matrix, logit_scale, top_k, start_ns, end_ns, robot, camera)
        return found, f'the memory store {self.uri}'

    def diagnostic_values(self) -> dict:
        """Values for /diagnostics (and a throttled warning when writes fail)."""
        if self.writer is None:
            return {'memory_frames': len(self.ring)}
        state = self.writer.state
        if state.failures > self._failures_logged:
            self._failures_logged = state.failures
            self._log.warning(('memory_store',), f'memory store {self.uri}: {state.last_error}; '
                              f'{state.dropped_frames} frames dropped from memory so far')
        return {'memory_store': 'connected' if state.connected else 'away',
                'memory_store_written': state.written_frames,
                'memory_store_dropped': state.dropped_frames,
                'memory_store_queued': self.writer.queued}
