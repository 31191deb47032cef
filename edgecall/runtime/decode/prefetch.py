"""Software prefetch for the decoder's numba kernels.

The beam search reads about 16 scattered cache lines of each frame's score row,
addresses the hardware prefetcher cannot guess: a third of its time went to
waiting on those loads. Asking for a frame's lines a few frames early hides that
latency. A prefetch is only a hint: it never faults and changes no result.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

LINE_FLOATS = 16  # float32 values per 64-byte cache line


def _prefetch_intrinsic(write: int):  # noqa: ANN202 - numba intrinsic factory
    @intrinsic
    def prefetch(typingctx, array, index):  # noqa: ANN001, ANN202, ARG001 - numba's intrinsic signature
        """Hint that ``array[index]`` (1-D) will soon be read (or written); returns nothing."""
        if not isinstance(array, types.Array) or array.ndim != 1 or not isinstance(index, types.Integer):
            return None
        sig = types.void(array, index)

        def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
            arytype = signature.args[0]
            ary = context.make_array(arytype)(context, builder, args[0])
            ptr = cgutils.get_item_pointer(context, builder, arytype, ary, [args[1]])
            i32 = ir.IntType(32)
            fn = cgutils.get_or_insert_function(
                builder.module, ir.FunctionType(ir.VoidType(), [ptr.type, i32, i32, i32]), "llvm.prefetch.p0"
            )
            builder.call(fn, [ptr, i32(write), i32(3), i32(1)])  # locality 3: keep in all levels; data cache
            return context.get_dummy_value()

        return sig, codegen

    return prefetch


prefetch_read = _prefetch_intrinsic(0)
prefetch_write = _prefetch_intrinsic(1)


@njit(cache=True, nogil=True)
def prefetch_row(row: np.ndarray, write: bool = False) -> None:
    """Prefetch every cache line of a contiguous 1-D row, for reading or for writing."""
    last = row.shape[0] - 1
    for c in range(0, row.shape[0], LINE_FLOATS):
        if write:
            prefetch_write(row, c)
        else:
            prefetch_read(row, c)
    if last >= 0:  # the last line, when the row starts mid-line
        if write:
            prefetch_write(row, last)
        else:
            prefetch_read(row, last)
