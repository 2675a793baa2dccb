"""numba flags for every analytics kernel, in one place.

``STOREFLOW_NUMBA_CACHE=0`` turns the on-disk compile cache off (e.g. on a read-only install);
``STOREFLOW_NUMBA_PARALLEL=0`` runs the ``prange`` kernels serially (debugging, profiling).
"""

from __future__ import annotations

import os

__all__ = ["NJIT", "NJIT_PARALLEL"]

_CACHE = os.environ.get("STOREFLOW_NUMBA_CACHE", "1") != "0"
_PARALLEL = os.environ.get("STOREFLOW_NUMBA_PARALLEL", "1") != "0"

#: Serial kernels. fastmath stays off: results are compared bit-for-bit with the references.
NJIT: dict[str, bool] = {"cache": _CACHE, "nogil": True, "fastmath": False}
#: Kernels with a ``prange`` over tag blocks.
NJIT_PARALLEL: dict[str, bool] = {**NJIT, "parallel": _PARALLEL}
