"""
Nearest embeddings by inner product: brute force (torch) or a faiss index.

`bench/bench_memory.py` (`make bench`) measures query latency, memory and build
time of each kind at 10k, 100k and 1M vectors; its table is in the README.
Brute force is exact and needs no build: up to FAISS_FROM vectors (about
50 ms per query on 2 CPU cores at 512 dimensions) it is the choice. Above, an
inverted-file index (faiss IVF) answers in a few milliseconds at a recall of
about 0.94 (measured at 100k); HNSW answered as fast but with lower recall
and a far longer build on the same vectors. faiss is imported only when an
index of its kinds is built.
"""
import numpy as np
import torch

KINDS = ('exact', 'flat', 'ivf', 'hnsw')
# From this many vectors on, choose_kind picks faiss IVF (see the module docstring).
FAISS_FROM = 200_000


def choose_kind(count: int) -> str:
    """Choose the index kind for `count` vectors: exact below FAISS_FROM, else ivf."""
    return 'exact' if count < FAISS_FROM else 'ivf'


class VectorIndex:
    """
    An index over [N, D] L2-normalized float32 vectors, searched by inner product.

    kinds: 'exact' (a torch matrix product), 'flat' (faiss IndexFlatIP, exact),
    'ivf' (faiss IndexIVFFlat, sqrt(N) lists, nprobe 32), 'hnsw' (faiss
    IndexHNSWFlat, M 16, efConstruction 40, efSearch 128).
    """

    def __init__(self, vectors: np.ndarray | torch.Tensor, kind: str = 'exact'):
        if kind not in KINDS:
            raise ValueError(f'index kind must be one of {", ".join(KINDS)}, not {kind!r}')
        vectors = np.ascontiguousarray(torch.as_tensor(vectors).float().cpu().numpy())
        self.kind, self.count, self.dim = kind, len(vectors), vectors.shape[1]
        if kind == 'exact':
            self._vectors = torch.from_numpy(vectors)
            return
        import faiss
        if kind == 'flat':
            index = faiss.IndexFlatIP(self.dim)
        elif kind == 'ivf':
            lists = max(1, int(np.sqrt(self.count)))
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, lists,
                                       faiss.METRIC_INNER_PRODUCT)
            index.train(vectors[np.random.default_rng(0).permutation(self.count)
                                [:max(lists * 40, 1)]])
            index.nprobe = min(32, lists)
        else:
            index = faiss.IndexHNSWFlat(self.dim, 16, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = 40
            index.hnsw.efSearch = 128
        index.add(vectors)
        self._index = index

    def search(self, queries: np.ndarray | torch.Tensor, k: int) -> tuple[np.ndarray, np.ndarray]:
        """[Q, D] queries -> ([Q, k] inner products, [Q, k] row ids), best first; -1 pads."""
        queries = np.ascontiguousarray(torch.as_tensor(queries).float().cpu().numpy())
        k = min(k, self.count)
        if self.kind == 'exact':
            scores, ids = torch.topk(torch.from_numpy(queries) @ self._vectors.T, k, dim=1)
            return scores.numpy(), ids.numpy()
        return self._index.search(queries, k)
