"""Feature matrices that TensorFlow reads in place, without a copy.

`tf.constant` and `tf.convert_to_tensor` copy a NumPy array, and on the way hold a
second, transient copy: a 400 MB matrix costs 800 MB more at the peak (measured with
TF 2.21). At 100,000 photos that is what put a cold run over its memory target. A
DLPack view shares the array's memory instead; TensorFlow accepts one only when the
data starts on its allocator's 64-byte boundary (anything else aborts the process
inside a kernel, not with an exception), which NumPy's own large allocations do not:
glibc hands out page + 16 bytes. So the matrices that training reads are allocated
here, aligned, and `as_tensor` shares memory only with an array it can prove is
aligned; any other array is copied (tf.constant's way).

The shared array must not be written while the tensor lives: TensorFlow takes
tensors to be immutable.
"""

from __future__ import annotations

import numpy as np

ALIGNMENT = 64  # TensorFlow's Allocator::kAllocatorAlignment (and Eigen's largest)


def aligned_empty(shape: tuple[int, ...], dtype=np.float32) -> np.ndarray:
    """An uninitialised C-contiguous array whose data starts on an ALIGNMENT-byte boundary."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.empty(size + ALIGNMENT, np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + size].view(dtype).reshape(shape)


def gather_rows(matrix: np.ndarray, rows: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """matrix[rows] written into `out` (default: a new aligned array), without a copy on the way:
    NumPy's take copies through a buffer of its own first when given out= and mode="raise"
    (the rows are checked by whoever found them)."""
    if out is None:
        out = aligned_empty((len(rows), matrix.shape[1]), matrix.dtype)
    if len(rows):
        np.take(matrix, rows, axis=0, out=out, mode="clip")
    return out


def shareable(array: np.ndarray) -> bool:
    """Whether TensorFlow can read `array` in place: C-contiguous, writable, aligned, non-empty."""
    return (array.size > 0 and array.flags.c_contiguous and array.flags.writeable
            and array.ctypes.data % ALIGNMENT == 0)


def as_tensor(array: np.ndarray, dtype=None):
    """A tf.Tensor of `array` (as `dtype`): its memory when shareable(), else a copy."""
    import tensorflow as tf

    array = np.asarray(array, dtype=dtype)
    if shareable(array):
        return tf.experimental.dlpack.from_dlpack(array.__dlpack__())
    return tf.constant(array)
