"""
A memory of frames in a real vector database: Milvus, embedded or as a server.

    milvus:PATH.db                Milvus Lite (pymilvus + milvus-lite): the Milvus
                                  engine embedded in this process, a file on the robot
    http://HOST:19530, https://…  a Milvus standalone or distributed server shared by a
                                  fleet, through the same pymilvus.MilvusClient calls

Each region is one row: its embedding, the robot, camera, stamp, frame_id, box,
the run (bag) it came from and when it was stored (on the writer's clock), as
scalar fields, so a search filters by robot, camera and time. The index suits
the mode: FLAT (exact) on Lite, HNSW on a server. Retention is by age and by
row count, per robot, enforced by deletes: the store never grows without bound.

A search is the in-process memory's (memory.rank_frames): the database returns
the regions nearest the query (inner product of L2-normalized embeddings), which
are then scored exactly, softmax against the background prompts, each frame
answering with its best region.

pymilvus is imported only when a store is opened: the robot needs it only with
`memory_store` set.
"""
from collections import deque
import contextlib
from dataclasses import dataclass
import json
from pathlib import Path
import threading
import time

from clip_perception.engine.memory import Match, NS_PER_SEC, rank_frames, Regions, StoredFrame
from clip_perception.engine.model_loading import first_line
import numpy as np
import torch

COLLECTION = 'clip_perception_regions'
TEXT_LENGTH = 512  # robot, camera, frame_id and run names
# A search fetches this many nearest regions per requested frame, then ranks them exactly.
CANDIDATES_PER_MATCH = 64
MAX_CANDIDATES = 16_384  # Milvus' limit on one search's results
_LITE_OPENING = threading.Lock()
# How long a writer whose creation of the collection failed waits for another's.
CREATE_WAIT_SEC = 5.0


class StoreError(RuntimeError):
    """The store cannot be opened or used; the message says why, in one line."""


@dataclass(frozen=True)
class StoreSettings:
    """Where the store is and what it keeps (per robot; 0: no such bound)."""

    uri: str
    token: str = ''  # a server's token ("user:password" or an API key); Lite has none
    robot: str = ''  # this writer's name (the node's namespace, or a parameter)
    max_rows: int = 1_000_000
    max_age_sec: float = 0.0
    collection: str = COLLECTION


def milvus_uri(uri: str) -> tuple[str, bool]:
    """
    Turn a memory_store URI into pymilvus' (uri, embedded).

    'milvus:PATH.db' -> (PATH.db, True): Milvus Lite; 'http(s)://…' -> as is, a
    server. ValueError for anything else.
    """
    if uri.startswith('milvus:'):
        path = uri.removeprefix('milvus:')
        if not path.endswith('.db'):
            raise ValueError(f'a Milvus Lite store is a file named *.db, got {uri!r}')
        return str(Path(path).expanduser().resolve()), True
    if uri.startswith(('http://', 'https://')):
        return uri, False
    raise ValueError(f"memory_store must be 'milvus:PATH.db' (embedded Milvus Lite) or "
                     f'http(s)://HOST:PORT (a Milvus server), got {uri!r}')


def _quoted(text: str) -> str:
    """Return `text` as a string literal of Milvus' filter expressions."""
    return json.dumps(text)


def store_filter(robot: str = '', camera: str = '', start_ns: int = 0, end_ns: int = 0,
                 run: str | None = None) -> str:
    """Return a filter expression; empty or zero arguments leave that side open."""
    terms = []
    if robot:
        terms.append(f'robot == {_quoted(robot)}')
    if camera:
        terms.append(f'camera == {_quoted(camera)}')
    if start_ns:
        terms.append(f'stamp_ns >= {int(start_ns)}')
    if end_ns:
        terms.append(f'stamp_ns <= {int(end_ns)}')
    if run is not None:
        terms.append(f'run == {_quoted(run)}')
    return ' and '.join(terms)


class MilvusStore:
    """
    Regions in a Milvus collection; one client, safe to call from one thread at a time.

    `dim`: the embedding size (the model's projection); a store holding another size is
    refused. Raises StoreError when the store cannot be reached or opened.
    """

    def __init__(self, settings: StoreSettings, dim: int):
        self.settings, self.dim = settings, dim
        try:
            uri, self.embedded = milvus_uri(settings.uri)
        except ValueError as error:
            raise StoreError(str(error)) from None
        self._lock = threading.Lock()
        # this robot's stored frames, oldest first: (stored_ns, rows), for retention
        self._own: deque[tuple[int, int]] = deque()
        self._own_rows = 0
        self._ledger_open = False
        try:
            from pymilvus import MilvusClient
        except ImportError:
            raise StoreError('memory_store needs pymilvus (and milvus-lite for a file): '
                             'pip install pymilvus milvus-lite') from None
        try:
            if self.embedded:
                Path(uri).parent.mkdir(parents=True, exist_ok=True)
            # milvus-lite starts one server per file in this process, but two threads
            # opening the same file at once both start one and the second fails ("Open
            # local milvus failed"): this process opens Lite files one at a time
            with _LITE_OPENING if self.embedded else contextlib.nullcontext():
                self.client = MilvusClient(uri, token=settings.token) if settings.token \
                    else MilvusClient(uri)
                self._open_collection()
            if settings.max_rows or settings.max_age_sec:  # retention: know what is there
                self._read_own_rows()
        except StoreError:
            raise
        except Exception as error:  # a locked or corrupt file, a server not there
            raise StoreError(f'cannot open the memory store {settings.uri}: '
                             f'{type(error).__name__}: {first_line(error)}') from None

    # --- set-up -------------------------------------------------------------------------
    def _open_collection(self) -> None:
        from pymilvus import DataType
        name, client = self.settings.collection, self.client
        if client.has_collection(name):
            fields = {f['name']: f for f in client.describe_collection(name)['fields']}
            dim = fields.get('embedding', {}).get('params', {}).get('dim')
            if dim is not None and int(dim) != self.dim:
                raise StoreError(f'the memory store {self.settings.uri} holds {dim}-d '
                                 f'embeddings, this model makes {self.dim}-d ones')
            client.load_collection(name)
            return
        schema = client.create_schema(auto_id=True, enable_dynamic_field=False)
        schema.add_field('id', DataType.INT64, is_primary=True)
        schema.add_field('embedding', DataType.FLOAT_VECTOR, dim=self.dim)
        for text in ('robot', 'camera', 'frame_id', 'run'):
            schema.add_field(text, DataType.VARCHAR, max_length=TEXT_LENGTH)
        for number in ('stamp_ns', 'stored_ns'):
            schema.add_field(number, DataType.INT64)
        for corner in ('x0', 'y0', 'x1', 'y1'):
            schema.add_field(corner, DataType.FLOAT)
        index = client.prepare_index_params()
        if self.embedded:  # Lite: exact search; a robot's store is small
            index.add_index('embedding', index_type='FLAT', metric_type='IP')
        else:  # a fleet's server: a graph index, and the filtered fields indexed
            index.add_index('embedding', index_type='HNSW', metric_type='IP',
                            params={'M': 16, 'efConstruction': 200})
            for scalar in ('robot', 'camera', 'stamp_ns', 'run'):
                index.add_index(scalar, index_type='INVERTED')
        self._create(name, schema, index)

    def _create(self, name: str, schema, index) -> None:
        """Create a collection; when another writer is making it meanwhile, use theirs."""
        try:
            self.client.create_collection(name, schema=schema, index_params=index)
            return
        except Exception:
            deadline = time.monotonic() + CREATE_WAIT_SEC
            while not self.client.has_collection(name):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self.client.load_collection(name)

    def _read_own_rows(self) -> None:
        """Rebuild this robot's retention queue from what the store holds (a restart)."""
        per_frame: dict[int, int] = {}
        for row in self._all(self.settings.collection,
                             store_filter(robot=self.settings.robot) or 'stored_ns >= 0',
                             ['stored_ns']):
            per_frame[row['stored_ns']] = per_frame.get(row['stored_ns'], 0) + 1
        for stored_ns in sorted(per_frame):
            self._own.append((stored_ns, per_frame[stored_ns]))
            self._own_rows += per_frame[stored_ns]

    # --- writing ------------------------------------------------------------------------
    def add(self, frames: list[tuple[StoredFrame, int]], run: str = '') -> int:
        """
        Insert frames (each with its clock_ns at storage) as one batch; return rows written.

        Then enforce retention (this robot's rows older than max_age_sec, and beyond
        max_rows, oldest first).
        """
        rows = []
        for frame, clock_ns in frames:
            regions = frame.regions
            embeddings = regions.embeddings.float().numpy()
            for box, embedding in zip(np.asarray(regions.boxes, np.float64), embeddings):
                rows.append({'embedding': embedding.tolist(), 'robot': self.settings.robot,
                             'camera': frame.camera, 'frame_id': frame.frame_id,
                             'run': run, 'stamp_ns': int(frame.stamp_ns),
                             'stored_ns': int(clock_ns),
                             **dict(zip(('x0', 'y0', 'x1', 'y1'), map(float, box)))})
        if not rows:
            return 0
        with self._lock:
            self.client.insert(self.settings.collection, rows)
            for frame, clock_ns in frames:
                count = len(frame.regions.boxes)
                if count:
                    self._own.append((int(clock_ns), count))
                    self._own_rows += count
            self.forget(max(int(clock_ns) for _, clock_ns in frames))
        return len(rows)

    def forget(self, clock_ns: int) -> int:
        """Delete this robot's rows beyond the retention bounds; return how many went."""
        s = self.settings
        cutoff = None
        if s.max_age_sec > 0:
            oldest_kept = clock_ns - int(s.max_age_sec * NS_PER_SEC)
            while self._own and self._own[0][0] < oldest_kept:
                cutoff = self._pop_oldest()
        while s.max_rows and self._own_rows > s.max_rows:
            cutoff = self._pop_oldest()
        if cutoff is None:
            return 0
        robot = store_filter(robot=s.robot)
        expression = f'stored_ns <= {cutoff}' + (f' and {robot}' if robot else '')
        result = self.client.delete(s.collection, filter=expression)
        return int(result.get('delete_count', 0)) if isinstance(result, dict) else 0

    def _pop_oldest(self) -> int:
        stored_ns, rows = self._own.popleft()
        self._own_rows -= rows
        return stored_ns

    # --- reading ------------------------------------------------------------------------
    def count(self, robot: str | None = None) -> int:
        """Return the rows stored (of `robot`, or of every robot with None)."""
        expression = store_filter(robot=robot) if robot else ''
        result = self.client.query(self.settings.collection, filter=expression,
                                   output_fields=['count(*)'])
        return int(result[0]['count(*)'])

    def runs(self) -> set[str]:
        """List the names of the bags (runs) that have rows in the store, finished or not."""
        return {row['run'] for row in self._all(self.settings.collection, 'run != ""',
                                                ['run'])}

    def _all(self, collection: str, expression: str, fields: list[str]):
        """Yield every row matching `expression`, in batches (no limit on their number)."""
        iterator = self.client.query_iterator(collection, batch_size=4096, filter=expression,
                                              output_fields=fields)
        try:
            while batch := iterator.next():
                yield from batch
        finally:
            iterator.close()

    # --- bags indexed offline -----------------------------------------------------------
    # A bag's rows go in batches; the bag counts as indexed once its line is in the
    # ledger, a second collection written after its last batch. A bag with rows but no
    # line (an indexer stopped midway) is dropped and indexed again.
    @property
    def _ledger(self) -> str:
        name = f'{self.settings.collection}_runs'
        if self._ledger_open:
            return name
        self._ledger_open = True
        if self.client.has_collection(name):
            self.client.load_collection(name)
        else:
            from pymilvus import DataType
            schema = self.client.create_schema(auto_id=False, enable_dynamic_field=False)
            schema.add_field('run', DataType.VARCHAR, is_primary=True, max_length=TEXT_LENGTH)
            schema.add_field('robot', DataType.VARCHAR, max_length=TEXT_LENGTH)
            for number in ('frames', 'regions', 'indexed_ns'):
                schema.add_field(number, DataType.INT64)
            # Milvus keeps no collection without a vector field; this one holds nothing
            schema.add_field('unused', DataType.FLOAT_VECTOR, dim=2)
            index = self.client.prepare_index_params()
            index.add_index('unused', index_type='FLAT', metric_type='L2')
            self._create(name, schema, index)
        return name

    def finished_runs(self) -> dict[str, dict]:
        """Return {run: {'robot', 'frames', 'regions', 'indexed_ns'}} of every finished bag."""
        with self._lock:
            return {row.pop('run'): row for row in self._all(
                self._ledger, 'run != ""', ['run', 'robot', 'frames', 'regions', 'indexed_ns'])}

    def finish_run(self, run: str, frames: int, regions: int, clock_ns: int) -> None:
        """Record that every row of bag `run` is written."""
        with self._lock:
            self.client.upsert(self._ledger, [{
                'run': run, 'robot': self.settings.robot, 'frames': int(frames),
                'regions': int(regions), 'indexed_ns': int(clock_ns), 'unused': [0.0, 0.0]}])

    def drop_run(self, run: str) -> None:
        """Delete a bag's rows and its ledger line (to index it again)."""
        with self._lock:
            self.client.delete(self.settings.collection, filter=store_filter(run=run))
            self.client.delete(self._ledger, filter=store_filter(run=run))

    def search(self, class_matrix: torch.Tensor, logit_scale: float, top_k: int,
               start_ns: int = 0, end_ns: int = 0, robot: str = '',
               camera: str = '') -> list[Match]:
        """
        Rank the stored frames for a query, as FrameMemory.search does, filtered.

        class_matrix: [1 + B, D], the query then the background prompts. Each match's
        frame names the robot that saw it.
        """
        if top_k < 1:
            return []
        query = class_matrix[0].float().cpu().numpy().tolist()
        limit = min(MAX_CANDIDATES, top_k * CANDIDATES_PER_MATCH)
        with self._lock:
            found = self.client.search(
                self.settings.collection, data=[query], limit=limit,
                filter=store_filter(robot, camera, start_ns, end_ns),
                output_fields=['embedding', 'robot', 'camera', 'frame_id', 'stamp_ns', 'run',
                               'x0', 'y0', 'x1', 'y1'])[0]
        frames: dict[tuple, list] = {}
        for hit in found:
            row = hit['entity']
            key = (row['robot'], row['camera'], row['stamp_ns'], row['frame_id'], row['run'])
            frames.setdefault(key, []).append(row)
        stored = [StoredFrame(camera_name, stamp_ns, frame_id,
                              Regions(np.array([[r['x0'], r['y0'], r['x1'], r['y1']]
                                                for r in rows], np.float64),
                                      torch.tensor([r['embedding'] for r in rows])),
                              robot=robot_name, run=run)
                  for (robot_name, camera_name, stamp_ns, frame_id, run), rows in frames.items()]
        return rank_frames(stored, class_matrix, logit_scale, top_k)

    def close(self) -> None:
        try:
            self.client.close()
        except Exception:  # closing a client whose server went away: nothing to keep
            pass
