"""
Benchmark the memory stores: Milvus (embedded Lite, and a server) against in-process search.

    .venv/bin/python bench/bench_memory_store.py [--sizes 100000 1000000] [--quick]

For each size, the same synthetic regions (clustered L2-normalized 512-d
vectors, bench_memory.clustered_vectors; frames of 400 regions as the demo's
windows make) go into:
  exact        the in-process memory's brute force (vector_index 'exact', torch)
  faiss ivf    vector_index 'ivf' (the offline search's index above 200k regions)
  milvus lite  engine.memory_store.MilvusStore on a Milvus Lite file (FLAT, embedded)
  milvus server  the same class on a Milvus server (HNSW): milvus-lite's gRPC
               server in a process of its own on this machine (Milvus' API with the
               Lite engine behind it, not Milvus standalone's C++ engine)
Printed per size and store: insert throughput (regions/s, through the store's own
`add`; faiss: its build; the exact memory keeps the vectors as they are), query
latency p50 and p95 (top 10, one query at a time), recall@10 against exact, and
the p50's ratio to exact in this run.

Then what the embedded store costs a robot (the node's writer thread): resident
memory before and after opening a Lite file and writing 100 frames, and the CPU
time of one frame's insert; and `python -m clip_perception.index` on copies of the
bundled demo bag, frames/s with 1 and 2 worker processes.
"""
import argparse
import gc
from pathlib import Path
import re
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import time

from bench_memory import clustered_vectors
from clip_perception.engine.memory import Regions, StoredFrame
from clip_perception.engine.memory_store import MilvusStore, StoreSettings
from clip_perception.engine.vector_index import VectorIndex
import numpy as np
import torch

REGIONS_PER_FRAME = 400
FRAMES_PER_INSERT = 16  # the node's writer inserts what has queued up, up to 64 frames


STAMP_STEP = 10**8  # frame n has stamp n * STAMP_STEP


def frames_of(vectors: np.ndarray) -> list[StoredFrame]:
    """
    Cut the vectors into frames of REGIONS_PER_FRAME regions.

    A region's box x0 is its number in the frame: a stored row tells its position
    in `vectors` by (stamp, x0).
    """
    frames = []
    for number, start in enumerate(range(0, len(vectors), REGIONS_PER_FRAME)):
        chunk = torch.from_numpy(vectors[start:start + REGIONS_PER_FRAME])
        boxes = np.array([[i, 0, i + 1, 1] for i in range(len(chunk))], np.float64)
        frames.append(StoredFrame('/camera/image_raw', number * STAMP_STEP, 'camera',
                                  Regions(boxes, chunk.half())))
    return frames


class MilvusServer:
    """milvus-lite's gRPC server (a real Milvus endpoint) in a process of its own."""

    def __init__(self, data: Path):
        with socket.socket() as probe:
            probe.bind(('127.0.0.1', 0))
            port = probe.getsockname()[1]
        self.process = subprocess.Popen(
            [sys.executable, '-m', 'milvus_lite', 'server', '--data-dir', str(data),
             '--host', '127.0.0.1', '--port', str(port)], stdout=subprocess.PIPE, text=True)
        if 'listening' not in self.process.stdout.readline():
            raise RuntimeError('the Milvus server did not start')
        self.uri = f'http://127.0.0.1:{port}'

    def stop(self):
        self.process.kill()
        self.process.wait()


def timed_queries(search, queries: np.ndarray, k: int):
    """Run each query alone; return (ids [Q, k], latencies in ms)."""
    found, times = [], []
    for query in queries:
        started = time.perf_counter()
        found.append(search(query, k))
        times.append(1000 * (time.perf_counter() - started))
    return found, np.array(times)


def stored_positions(store: MilvusStore, query: np.ndarray, k: int) -> list[int]:
    """Search the store for the k nearest regions; their positions in the input vectors."""
    hits = store.client.search(store.settings.collection, data=[query.tolist()], limit=k,
                               output_fields=['stamp_ns', 'x0'])[0]
    return [hit['entity']['stamp_ns'] // STAMP_STEP * REGIONS_PER_FRAME + int(hit['entity']['x0'])
            for hit in hits]


def bench_size(size: int, args, rng, folder: Path) -> None:
    vectors = clustered_vectors(size, args.dim, rng)
    # fp16 as the memory keeps them; every store gets the same rounded vectors
    vectors = torch.from_numpy(vectors).half().float().numpy()
    picks = vectors[rng.integers(0, size, args.queries)]
    queries = picks + 0.1 * rng.standard_normal(picks.shape, dtype=np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    frames = frames_of(vectors)
    rows = []
    exact_ids = None
    for kind in ('exact', 'ivf'):
        started = time.perf_counter()
        index = VectorIndex(vectors, kind)
        build = time.perf_counter() - started
        found, times = timed_queries(
            lambda q, k, index=index: index.search(q[None], k)[1][0].tolist(), queries, args.k)
        if exact_ids is None:
            exact_ids = [set(ids) for ids in found]
        rows.append((f'{"exact" if kind == "exact" else "faiss ivf"} (in process)',
                     None if kind == 'exact' else size / build, times,
                     [len(set(ids) & truth) / args.k for ids, truth in zip(found, exact_ids)]))
        del index
        gc.collect()
    for name in ('milvus lite', 'milvus server'):
        server = MilvusServer(folder / f'server_{size}') if name == 'milvus server' else None
        uri = server.uri if server else f'milvus:{folder / f"lite_{size}.db"}'
        store = MilvusStore(StoreSettings(uri, max_rows=0), args.dim)
        try:
            started = time.perf_counter()
            for start in range(0, len(frames), FRAMES_PER_INSERT):
                store.add([(frame, 0) for frame in frames[start:start + FRAMES_PER_INSERT]])
            insert = time.perf_counter() - started
            store.client.flush(store.settings.collection)
            found, times = timed_queries(lambda q, k: stored_positions(store, q, k),
                                         queries, args.k)
            rows.append((name, size / insert, times, [len(set(ids) & truth) / args.k
                                                      for ids, truth in zip(found, exact_ids)]))
        finally:
            store.close()
            if server:
                server.stop()
        gc.collect()
    baseline = float(np.median(rows[0][2]))
    for name, throughput, times, recall in rows:
        p50, p95 = np.percentile(times, [50, 95])
        inserted = '— (kept as is)' if throughput is None else f'{throughput:,.0f}'
        print(f'| {size:,} | {name} | {inserted} | {p50:.1f} | {p95:.1f} | '
              f'{np.mean(recall):.3f} | {p50 / baseline:.2f} |', flush=True)


def resident_mib() -> float:
    """Return the resident memory of this process now, MiB."""
    pages = int(Path('/proc/self/statm').read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def embedded_cost(args, rng, folder: Path, frames: int = 100) -> None:
    """Measure what a node's Lite store costs: memory, one frame's insert (writer thread)."""
    before = resident_mib()
    store = MilvusStore(StoreSettings(f'milvus:{folder / "robot.db"}', robot='robot',
                                      max_rows=100_000), args.dim)
    opened = resident_mib()
    cpu, wall = [], []
    try:
        for i, frame in enumerate(frames_of(clustered_vectors(frames * REGIONS_PER_FRAME,
                                                              args.dim, rng))):
            started, started_cpu = time.perf_counter(), time.process_time()
            store.add([(frame, i * 10**9)])
            cpu.append(1000 * (time.process_time() - started_cpu))
            wall.append(1000 * (time.perf_counter() - started))
    finally:
        store.close()
    grown = resident_mib() - opened
    print("embedded store (Milvus Lite, in the node's process): resident memory "
          f'+{opened - before:.0f} MiB to open a file, +{grown:.0f} MiB after {frames} frames '
          f'({frames * REGIONS_PER_FRAME:,} regions); ' "one frame's "
          f'insert on the writer thread: median {np.median(cpu):.0f} ms CPU, '
          f'{np.median(wall):.0f} ms wall', flush=True)


def indexing_rate(copies: int, folder: Path) -> None:
    """Time `python -m clip_perception.index` on copies of the demo bag, 1 and 2 workers."""
    from clip_perception.tools.assets import DEMO_BAG
    archive = folder / 'archive'
    for k in range(copies):
        shutil.copytree(DEMO_BAG, archive / f'run_{k}')
    rates, frames = {}, 0
    for workers in (1, 2):
        done = subprocess.run(
            [sys.executable, '-m', 'clip_perception.index', str(archive), '--store',
             f'milvus:{folder / f"index_{workers}.db"}', '--workers', str(workers)],
            capture_output=True, text=True, check=True)
        found = re.search(r'(\d+) frames in [\d.]+ s \(([\d.]+) frames/s\)', done.stdout)
        frames, rates[workers] = int(found.group(1)), float(found.group(2))
    print(f'indexing {copies} copies of the demo bag ({frames} frames): 1 worker '
          f'{rates[1]:.2f} frames/s, 2 workers {rates[2]:.2f} frames/s '
          f'({rates[2] / rates[1]:.2f}x)', flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[100_000, 1_000_000])
    parser.add_argument('--dim', type=int, default=512)
    parser.add_argument('--queries', type=int, default=100)
    parser.add_argument('--k', type=int, default=10)
    parser.add_argument('--bag-copies', type=int, default=4)
    parser.add_argument('--quick', action='store_true', help='10k regions, 10 queries')
    args, _ = parser.parse_known_args()  # `make bench` passes the others' options too
    if args.quick:
        args.sizes, args.queries, args.bag_copies = [10_000], 10, 2
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        embedded_cost(args, rng, Path(folder))  # first: a process that has not grown yet
        print(f'memory stores: {args.dim}-d regions, {REGIONS_PER_FRAME} per frame, '
              f'one query at a time, top {args.k}')
        print('| regions | store | insert regions/s | query p50 ms | query p95 ms | '
              'recall@10 | p50 vs exact |')
        print('|---|---|---|---|---|---|---|')
        for size in args.sizes:
            bench_size(size, args, rng, Path(folder))
        indexing_rate(args.bag_copies, Path(folder))


if __name__ == '__main__':
    main()
