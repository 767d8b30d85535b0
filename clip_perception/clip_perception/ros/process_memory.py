"""
A long-running node and glibc's allocator: keep freed memory from piling up.

glibc gives threads that allocate at once arenas of their own (up to 8 per core)
and returns little of what is freed in them to the system. The node allocates
from several threads (the executor, the inference thread, DDS's), with sizes
that change with every frame, label set and request: a 10-minute hostile soak
saw resident memory rise 40 to 65% without anything being kept. Two arenas and
a periodic trim hold it near its start. Elsewhere than glibc both do nothing.
"""
import ctypes
import ctypes.util

_M_ARENA_MAX = -8  # mallopt's parameter number (malloc.h)


def _libc():
    name = ctypes.util.find_library('c')
    try:
        libc = ctypes.CDLL(name) if name else None
        return libc if libc is not None and hasattr(libc, 'malloc_trim') else None
    except OSError:
        return None


_LIBC = _libc()


def limit_arenas(count: int = 2) -> bool:
    """Let the allocator use at most `count` arenas (call before threads start); True if done."""
    return bool(_LIBC and _LIBC.mallopt(_M_ARENA_MAX, count))


def release_free_memory() -> bool:
    """Return what the allocator holds free to the system; True if some was returned."""
    return bool(_LIBC and _LIBC.malloc_trim(0))
