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


@pytest.fixture(scope="module")
def digits_model():
    """(model, x, y): the digits CNN trained 3 epochs on 512 scikit-learn digits (gradients cleared),
    with the whole digits train split."""
    from gwkcuda import data, train
    from gwkcuda.models import build_model
    x, y = data.load_dataset("digits", "train")
    torch.manual_seed(0)
    model = build_model("digits_cnn")
    train.train(model, x[:512], y[:512], epochs=3, lr=3e-3)
    model.zero_grad(set_to_none=True)
    return model, x, y
