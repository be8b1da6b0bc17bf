"""gwkcuda: weight-clustering compression of neural networks with CPU and CUDA kernels.

Importing the package loads the compiled extension, which registers ``torch.ops.gwkcuda.*``.
"""
import torch  # noqa: F401  (torch must be loaded before the extension)

try:
    from . import _C
except ImportError as exc:  # pragma: no cover - depends on the install
    raise ImportError(
        "gwkcuda's compiled extension (gwkcuda._C) could not be loaded: " + str(exc) + ". Build it "
        "against the installed torch with `pip install --no-build-isolation -e .` from the "
        "project root.") from exc

from . import ops  # noqa: E402,F401  (fake kernels for torch.compile)
from .ops import pack_bits, unpack_bits  # noqa: E402,F401


def build_info() -> dict:
    """Build facts of the compiled extension.

    Returns a dict: ``torch_version`` (the torch it was built against), ``cuda_compiled`` (bool:
    CUDA kernels are in the binary) and ``cuda_archs`` (the GPU archs compiled, comma-separated).
    """
    return dict(_C.build_info())


def cpu_level() -> str:
    """The x86-64 feature level gwkcuda's CPU loops run at: "x86-64-v4" (AVX-512), "x86-64-v3"
    (AVX2, FMA) or "baseline", the highest the CPU supports unless the environment variable
    GWKCUDA_CPU_LEVEL (read once) names a lower one. Every level gives the same results."""
    return _C.cpu_level()


__version__ = "0.1.0"


def __getattr__(name):
    """compress, save and load (gwkcuda.api), imported on first use: the pipelines they pull in
    are not needed by a plain ``import gwkcuda``."""
    if name in ("compress", "save", "load"):
        from . import api
        return getattr(api, name)
    raise AttributeError(f"module 'gwkcuda' has no attribute {name!r}")
