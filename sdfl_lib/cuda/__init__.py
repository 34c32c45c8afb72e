"""Precise RoI Pooling (Jiang et al., ECCV 2018): CUDA kernels with an exact PyTorch path.

`prroi_pool2d` pools ROIs; `PrRoIPool2D` is its module form; `prroi_pool_whole` is the fast
whole-map case the PPM uses. `load_extension` builds (once, cached) and returns the CUDA op.
"""

from __future__ import annotations

from sdfl_lib.cuda.exact import prroi_pool_whole
from sdfl_lib.cuda.prroi_pool import PrRoIPool2D, prroi_pool2d
from sdfl_lib.lazy import lazy_getattr

__all__ = ["PrRoIPool2D", "prroi_pool2d", "prroi_pool_whole", "load_extension"]


# The extension loader pulls in torch.utils.cpp_extension; only import it when asked.
__getattr__ = lazy_getattr(__name__, {"load_extension": "extension"})
