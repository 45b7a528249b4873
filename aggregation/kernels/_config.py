"""Kernel flags, thread count and launch guard: the one place that configures Numba.

Every kernel in this package is compiled with the flags below (``fastmath`` is off
so results are exact IEEE arithmetic, ``cache`` is on so daemons start fast,
``nogil`` is on so aggregation runs in worker threads while the IO loop keeps the
GIL).

Thread count: Numba reads ``NUMBA_NUM_THREADS`` at import (default: the number of
CPUs). :func:`set_num_threads` lowers it for every later kernel launch, from any
Python thread (Numba's own setting is thread-local, so the launch guard re-applies
ours in the launching thread).

Cache: compiled kernels are cached on disk (``cache=True``). ``FEDZERO_CACHE_DIR``
(the link's ``cache-dir`` setting sets it) puts Numba's cache in its ``numba``
subdirectory, which read-only installs need (systemd: ``CacheDirectory=``);
without it, ``NUMBA_CACHE_DIR`` or Numba's default (next to the sources if
writable, else the user's cache directory) applies.

Launch guard: Numba's ``workqueue`` threading layer aborts the process when two
Python threads launch parallel kernels at the same time. :func:`parallel_launch`
serializes launches with a module-level lock until the active layer is known to
be thread-safe (``tbb`` or ``omp``); then it only applies the thread count.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Final, TypeVar, cast

import numba

__all__ = [
    "BLOCK",
    "JIT_PENDING",
    "PARALLEL",
    "REASSOC",
    "SERIAL",
    "get_num_threads",
    "kernel",
    "parallel_kernel",
    "parallel_launch",
    "reassoc_kernel",
    "set_num_threads",
]

F = TypeVar("F", bound=Callable[..., Any])

SERIAL: Final[dict[str, Any]] = {
    "nogil": True,
    "cache": True,
    "fastmath": False,
    "error_model": "numpy",
}
"""Flags for serial kernels (``nogil`` so worker threads run them without the GIL)."""

PARALLEL: Final[dict[str, Any]] = {**SERIAL, "parallel": True}
"""Flags for ``prange`` kernels; each iteration writes a disjoint slice."""

REASSOC: Final[dict[str, Any]] = {**SERIAL, "fastmath": {"reassoc", "contract"}}
"""Flags for float64 dot products only: LLVM may reorder the sum to vectorize it.

Used where the caller bounds the rounding error of the sum and checks it (the
Krum Gram matrix); the order still depends only on the compiled code, never on
the thread count.
"""

BLOCK: Final[int] = 8192
"""Coordinates per parallel work item: the accumulator block stays in L1/L2."""

JIT_PENDING: Final[set[tuple[str, ...]]] = set()
"""Kernel variants being compiled in the background (``_jit.prepare``) right now.

While a variant is listed, its wrapper computes the same result with NumPy
instead of waiting for the compiler; a variant nobody prepares is compiled
inline on first use, as always.
"""

_THREADSAFE_LAYERS: Final[frozenset[str]] = frozenset({"tbb", "omp"})
_launch_lock = threading.RLock()
_layer_threadsafe = False
_CACHE = os.environ.get("FEDZERO_CACHE_DIR", "")
if _CACHE:  # before any kernel is decorated: Numba reads it when caching is enabled
    numba.config.CACHE_DIR = os.path.join(_CACHE, "numba")  # type: ignore[attr-defined]
_POOL_SIZE: Final[int] = int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]
_num_threads: int = _POOL_SIZE


def kernel(fn: F) -> F:
    """Compile ``fn`` as a serial kernel with :data:`SERIAL` flags."""
    return cast(F, numba.njit(**SERIAL)(fn))


def reassoc_kernel(fn: F) -> F:
    """Compile ``fn`` as a serial kernel with :data:`REASSOC` flags (vectorized sums)."""
    return cast(F, numba.njit(**REASSOC)(fn))


def parallel_kernel(fn: F) -> F:
    """Compile ``fn`` as a ``prange`` kernel with :data:`PARALLEL` flags."""
    return cast(F, numba.njit(**PARALLEL)(fn))


def get_num_threads() -> int:
    """Return the number of threads parallel kernels use.

    Returns:
        The count set by :func:`set_num_threads`, else ``NUMBA_NUM_THREADS``.
    """
    return _num_threads


def set_num_threads(n: int | None) -> int:
    """Set the number of threads for every later parallel kernel launch.

    Args:
        n: A count between 1 and ``NUMBA_NUM_THREADS`` (the pool size fixed at
            import), or ``None`` to restore ``NUMBA_NUM_THREADS``.

    Returns:
        The count now in effect.

    Raises:
        ValueError: If ``n`` is outside ``1..NUMBA_NUM_THREADS``.
    """
    global _num_threads
    limit = _POOL_SIZE
    if n is None:
        n = limit
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= limit:
        msg = (
            f"threads must be an integer in 1..{limit} (NUMBA_NUM_THREADS), got {n!r}; "
            "raise NUMBA_NUM_THREADS in the environment before starting Python for more"
        )
        raise ValueError(msg)
    _num_threads = n
    numba.set_num_threads(n)
    return n


def _threading_layer() -> str | None:
    try:
        return str(numba.threading_layer())  # type: ignore[attr-defined]
    except ValueError:  # no parallel kernel has run yet: the layer is not chosen
        return None


@contextmanager
def parallel_launch() -> Iterator[None]:
    """Guard one parallel kernel launch (thread count, and a lock if needed).

    Yields:
        Nothing; run exactly one parallel kernel call inside the block.
    """
    global _layer_threadsafe
    if numba.get_num_threads() != _num_threads:
        numba.set_num_threads(_num_threads)
    if _layer_threadsafe:
        yield
        return
    with _launch_lock:
        yield
        _layer_threadsafe = _threading_layer() in _THREADSAFE_LAYERS
