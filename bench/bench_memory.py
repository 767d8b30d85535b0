"""
Benchmark the memory's nearest-embedding search: brute force against faiss.

What one `~/find` query costs as the memory grows: synthetic L2-normalized
vectors (clustered like image embeddings: 2,000 centres, noise around each;
queries are stored vectors moved a little)
at each size, one query at a time as a service call asks, for each index kind
of clip_perception.engine.vector_index (exact: a torch matrix product; flat:
faiss IndexFlatIP; ivf: IndexIVFFlat; hnsw: IndexHNSWFlat):

    .venv/bin/python bench/bench_memory.py [--sizes 10000 100000 1000000] [--dim 512]

Prints per size and kind: build seconds, milliseconds per query (median of
--queries), memory of the index in MiB, recall@10 against the exact answer, and
the query time's ratio to brute force measured in the same process.
"""
import argparse
import gc
import time

from clip_perception.engine.vector_index import KINDS, VectorIndex
import numpy as np
import torch


def clustered_vectors(count: int, dim: int, rng: np.random.Generator) -> np.ndarray:
    """[count, dim] float32 unit vectors around 2,000 random centres (cosine ~0.86 within one)."""
    centres = rng.standard_normal((2000, dim), dtype=np.float32)
    vectors = centres[rng.integers(0, len(centres), count)]
    vectors += 0.4 * rng.standard_normal((count, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors


def index_bytes(index: VectorIndex) -> int:
    if index.kind == 'exact':
        return index.count * index.dim * 4
    import faiss
    return len(faiss.serialize_index(index._index))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().split('\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[10_000, 100_000, 1_000_000])
    parser.add_argument('--dim', type=int, default=512, help='ViT-B/32 embeddings: 512')
    parser.add_argument('--queries', type=int, default=50)
    parser.add_argument('--k', type=int, default=10)
    parser.add_argument('--quick', action='store_true', help='10k vectors, 5 queries')
    args, _ = parser.parse_known_args()  # `make bench` passes the engine's options too
    if args.quick:
        args.sizes, args.queries = [10_000], 5
    rng = np.random.default_rng(0)
    print(f'memory search: {args.dim}-d vectors, one query at a time, top {args.k}, '
          f'torch threads {torch.get_num_threads()}')
    print('| vectors | index | build s | query ms | memory MiB | recall@10 | query vs exact |')
    print('|---|---|---|---|---|---|---|')
    for size in args.sizes:
        vectors = clustered_vectors(size, args.dim, rng)
        picks = vectors[rng.integers(0, size, args.queries)]
        queries = picks + 0.1 * rng.standard_normal(picks.shape, dtype=np.float32)
        queries /= np.linalg.norm(queries, axis=1, keepdims=True)
        truth, baseline = None, None
        for kind in KINDS:
            started = time.perf_counter()
            index = VectorIndex(vectors, kind)
            build = time.perf_counter() - started
            times, found = [], []
            for query in queries:
                started = time.perf_counter()
                _, ids = index.search(query[None], args.k)
                times.append(time.perf_counter() - started)
                found.append(ids[0])
            found = np.array(found)
            if truth is None:
                truth = found
            recall = np.mean([len(set(a) & set(b)) / args.k for a, b in zip(found, truth)])
            query_ms = 1000 * float(np.median(times))
            baseline = baseline or query_ms
            print(f'| {size:,} | {kind} | {build:.2f} | {query_ms:.2f} | '
                  f'{index_bytes(index) / 2**20:.0f} | {recall:.3f} | '
                  f'{query_ms / baseline:.2f} |', flush=True)
            del index
            gc.collect()


if __name__ == '__main__':
    main()
