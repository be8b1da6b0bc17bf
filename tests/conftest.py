import pytest
import torch

import gwkcuda

CUDA_READY = torch.cuda.is_available() and gwkcuda.build_info()["cuda_compiled"]
_CUDA_SKIP_REASON = ("no CUDA GPU visible" if not torch.cuda.is_available()
                     else "extension built without CUDA kernels")

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not CUDA_READY, reason=_CUDA_SKIP_REASON))]
needs_cuda = pytest.mark.skipif(not CUDA_READY, reason=_CUDA_SKIP_REASON)


@pytest.fixture(params=DEVICES)
def device(request):
    """Every test taking `device` runs on the CPU, and on CUDA where a GPU and the kernels exist."""
    return request.param
