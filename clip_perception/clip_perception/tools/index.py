"""
Index rosbag2 archives into a memory store: what every recorded run saw, searchable.

    python -m clip_perception.index BAG_OR_FOLDER... --store URI [--workers N]
        [--ray ADDRESS] [--robot NAME] [--model DIR] [--params FILE] [--topic TOPIC]

Every rosbag2 under the given paths (a folder holding metadata.yaml) goes through
the detector as the node runs it (parameters file; the bundled demo model and
config/demo.yaml by default), and its regions into the store (`milvus:PATH.db`
or a Milvus server's http(s) URI, as the node's memory_store), each row naming
its bag: the run, `FOLDER/relative/path` of the bag under the folder given (a
bag given itself: its folder's name). Then

    python -m clip_perception.search --store URI "hammer"

finds it. Resumable: a bag the store lists as finished is skipped; one an
earlier indexer left half written is dropped and indexed again.

Bags are spread over --workers local processes (spawned, each with its own
model), or with --ray over the actors of a Ray cluster (ADDRESS as ray.init
takes it, e.g. `auto` or `ray://HOST:10001`; `local` starts a cluster on this
machine): every node of the cluster needs this package, the model and the bags
at the same paths (a shared file system). The workers detect; this process
alone writes to the store (a Milvus Lite file takes one process).
"""
import argparse
from concurrent.futures import as_completed, ProcessPoolExecutor
import contextlib
from dataclasses import dataclass, field
import multiprocessing
import os
from pathlib import Path
import sys
import time

from clip_perception.engine.memory import StoredFrame
from clip_perception.engine.memory_store import MilvusStore, StoreError, StoreSettings
from clip_perception.engine.model_loading import projection_dim, resolve_model_directory
from clip_perception.ros.rosbag_io import BagError
from clip_perception.tools.assets import DEMO_PARAMS
from clip_perception.tools.cli import CliError, existing_path, one_line_errors
from clip_perception.tools.search import (detect_bag, region_detector, region_settings,
                                          stored_frame)

# Frames per insert into the store.
WRITE_BATCH = 64


@dataclass
class BagIndex:
    """What a worker found in one bag."""

    run: str
    frames: list[StoredFrame] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # why -> images left out
    seconds: float = 0.0
    error: str = ''  # the bag could not be read (nothing of it is stored)

    @property
    def regions(self) -> int:
        return sum(len(f.regions.boxes) for f in self.frames)


def find_bags(paths: list[Path]) -> dict[str, Path]:
    """
    Return {run name: bag folder} of every rosbag2 under `paths`, sorted by name.

    CliError when a path does not exist, holds no bag, or two bags would share a name.
    """
    bags: dict[str, Path] = {}
    for path in paths:
        path = existing_path(Path(path), 'bag or folder')
        if (path / 'metadata.yaml').is_file():
            found = {path.resolve().name: path}
        elif path.is_dir():
            root = path.resolve()
            found = {f'{root.name}/{meta.parent.relative_to(root).as_posix()}': meta.parent
                     for meta in root.rglob('metadata.yaml')}
        else:
            raise CliError(f'{path} is no rosbag2 folder (no metadata.yaml)')
        if not found:
            raise CliError(f'no rosbag2 (a folder with metadata.yaml) under {path}')
        for run, bag in found.items():
            if run in bags and bags[run].resolve() != bag.resolve():
                raise CliError(f'two bags would both be run {run!r}: {bags[run]} and {bag}')
            bags[run] = bag
    return dict(sorted(bags.items()))


# --- workers: one detector each --------------------------------------------------------
_detector = None


def load_worker(params: Path, model: str | None, device: str, threads: int) -> None:
    """Load this worker's detector (a process pool's initializer, a Ray actor's start)."""
    global _detector
    import torch
    if threads:
        torch.set_num_threads(threads)
    _detector = region_detector(params, model, device)


def index_bag(run: str, bag: Path, topic: str | None) -> BagIndex:
    """Detect every image of one bag with this worker's detector."""
    started = time.perf_counter()
    found = BagIndex(run)
    try:
        found.frames = [stored_frame(name, msg, result, run) for name, msg, _, result
                        in detect_bag(_detector, bag, topic, skipped=found.skipped)]
    except BagError as error:
        found.frames, found.error = [], str(error)
    found.seconds = time.perf_counter() - started
    return found


class RayIndexer:
    """A Ray actor holding one detector (made remote by `ray_results`)."""

    def __init__(self, *worker_args):
        load_worker(*worker_args)

    def index(self, run: str, bag: Path, topic: str | None) -> BagIndex:
        return index_bag(run, bag, topic)


def local_results(bags: dict[str, Path], topic, workers: int, worker_args):
    """Yield each bag's BagIndex as it is done: in this process, or in spawned ones."""
    if workers == 1:
        load_worker(*worker_args)
        for run, bag in bags.items():
            yield index_bag(run, bag, topic)
        return
    # spawn, never fork: rclpy's serialization and torch's threads do not survive a fork
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context('spawn'),
                             initializer=load_worker, initargs=worker_args) as pool:
        futures = [pool.submit(index_bag, run, bag, topic) for run, bag in bags.items()]
        try:
            for future in as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()


@contextlib.contextmanager
def ray_cluster(address: str):
    """Connect to a Ray cluster (`local`: start one here) for the block's duration."""
    try:
        import ray
    except ImportError:
        raise CliError('--ray needs ray: pip install ray') from None
    ray.init(address=None if address == 'local' else address, include_dashboard=False,
             log_to_driver=False)
    try:
        yield
    finally:
        ray.shutdown()


def ray_results(bags: dict[str, Path], topic, workers: int, worker_args):
    """Yield each bag's BagIndex as it is done, from `workers` actors of the Ray cluster."""
    import ray
    from ray.util import ActorPool
    actor = ray.remote(num_cpus=1)(RayIndexer)
    pool = ActorPool([actor.remote(*worker_args) for _ in range(workers)])
    jobs = [(run, str(bag.resolve())) for run, bag in bags.items()]
    yield from pool.map_unordered(lambda a, job: a.index.remote(job[0], job[1], topic), jobs)


def write(store: MilvusStore, found: BagIndex) -> None:
    """Store one bag's frames in batches, then record it as finished."""
    for start in range(0, len(found.frames), WRITE_BATCH):
        clock_ns = time.time_ns()
        store.add([(frame, clock_ns) for frame in found.frames[start:start + WRITE_BATCH]],
                  run=found.run)
    store.finish_run(found.run, len(found.frames), found.regions, time.time_ns())


@one_line_errors
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('paths', nargs='+', type=Path, help='rosbag2 folders, or folders of them')
    parser.add_argument('--store', required=True,
                        help='milvus:PATH.db (Milvus Lite) or http(s)://HOST:19530 (a server)')
    parser.add_argument('--token', default=os.environ.get('MILVUS_TOKEN', ''),
                        help="a server's token (default: $MILVUS_TOKEN)")
    parser.add_argument('--robot', default='', help='the robot that recorded the bags')
    parser.add_argument('--workers', type=int, default=1,
                        help='worker processes (or Ray actors), each with its own model')
    parser.add_argument('--ray', metavar='ADDRESS', default=None,
                        help="spread the bags over a Ray cluster ('local': start one here)")
    parser.add_argument('--model', default=None,
                        help="CLIP model (default: the parameters file's, else the demo model)")
    parser.add_argument('--params', type=Path, default=DEMO_PARAMS, help='parameters file')
    parser.add_argument('--topic', default=None, help='image topic (default: all images)')
    parser.add_argument('--device', default='auto')
    args = parser.parse_args(argv)
    if args.workers < 1:
        parser.error('--workers must be >= 1')
    bags = find_bags(args.paths)
    _, model = region_settings(args.params, args.model)  # a wrong file: said before any work
    dim = projection_dim(resolve_model_directory(model))
    if not dim:
        raise CliError(f'cannot read the embedding size (projection_dim) of {model}')
    with contextlib.ExitStack() as stack:
        if args.ray:  # first: Ray starts its processes before the store's client has threads
            stack.enter_context(ray_cluster(args.ray))
        try:
            store = MilvusStore(StoreSettings(args.store, args.token, args.robot, max_rows=0),
                                dim)
        except StoreError as error:
            raise CliError(str(error)) from None
        stack.callback(store.close)
        return index_into(store, bags, args)


def index_into(store: MilvusStore, bags: dict[str, Path], args) -> int:
    """Index the bags the store has not finished; print progress; 1 if a bag failed."""
    finished = store.finished_runs()
    todo = {run: bag for run, bag in bags.items() if run not in finished}
    for run in todo:  # rows an indexer stopped midway left (a delete, not a scan of the store)
        store.drop_run(run)
    print(f'{len(bags)} bag(s): {len(bags) - len(todo)} already indexed, {len(todo)} to index'
          + (f' with {args.workers} worker(s)' + (' on Ray' if args.ray else '') if todo else ''),
          flush=True)
    if not todo:
        return 0
    threads = 0 if args.ray else max(1, (os.cpu_count() or 1) // args.workers)
    worker_args = (args.params, args.model, args.device, threads)
    results = ray_results(todo, args.topic, args.workers, worker_args) if args.ray \
        else local_results(todo, args.topic, args.workers, worker_args)
    started, frames, failed = time.perf_counter(), 0, []
    for done, found in enumerate(results, 1):
        if found.error:
            failed.append(found.run)
            print(f'[{done}/{len(todo)}] {found.run}: not indexed: {found.error}', flush=True)
            continue
        write(store, found)
        frames += len(found.frames)
        left_out = sum(found.skipped.values())
        print(f'[{done}/{len(todo)}] {found.run}: {len(found.frames)} frames, '
              f'{found.regions} regions in {found.seconds:.1f} s'
              + (f'; {left_out} image(s) left out: ' + '; '.join(found.skipped) if left_out
                 else ''), flush=True)
    seconds = time.perf_counter() - started
    print(f'indexed {len(todo) - len(failed)} bag(s), {frames} frames in {seconds:.1f} s '
          f'({frames / max(seconds, 1e-9):.2f} frames/s) into {args.store}')
    if failed:
        print(f'{len(failed)} bag(s) could not be read, not indexed: {", ".join(failed)} '
              '(run again to retry them)', file=sys.stderr)
    return 1 if failed else 0
