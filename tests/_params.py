"""The one list of dtypes and devices the tests run over.

The kernels read four float dtypes (docs/iou.md, docs/quantiles.md): numpy
has three of them; bfloat16 reaches the kernels as a torch tensor (or as the
raw uint16 patterns a torch tensor views as), so its cases need torch.
Devices: the CPU always; CUDA where a device is present (marked ``gpu``,
skipped cleanly without one).
"""
import numpy as np
import pytest

from _torch import needs_torch, torch

#: float dtypes by name, widest first
FLOAT_DTYPES = ("float64", "float32", "float16", "bfloat16")
#: those numpy has
NUMPY_FLOATS = (np.float64, np.float32, np.float16)
#: numpy's floats, then bfloat16 by name (needs torch)
KERNEL_FLOATS = (*NUMPY_FLOATS, pytest.param("bfloat16", marks=needs_torch))

_HAS_CUDA = torch is not None and torch.cuda.is_available()
#: where activations live: the CPU, and CUDA when there is a device
DEVICES = ("cpu", pytest.param("cuda", marks=[pytest.mark.gpu,
                                              pytest.mark.skipif(not _HAS_CUDA, reason="no CUDA device")]))


def torch_floats():
    """torch's float dtypes, widest first (needs torch)."""
    return tuple(getattr(torch, name) for name in FLOAT_DTYPES)
