"""Builds gwkcuda's one extension module, gwkcuda._C, with CPU kernels and, when possible, CUDA ones.

CUDA kernels are compiled when the installed torch is a CUDA build and a CUDA toolkit is found;
never decided by a visible GPU (a GPU-less build machine must still produce a CUDA build).
  GWKCUDA_FORCE_CUDA=1  require the CUDA kernels (fail loudly if they cannot be built)
  GWKCUDA_FORCE_CPU=1   skip them
  TORCH_CUDA_ARCH_LIST  GPU archs to compile for; default "8.0;9.0" (Ampere, Hopper)
Install with `pip install --no-build-isolation -e .` once torch is installed, so the extension is
built against the torch it will run with.
"""
import glob
import os
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _flag(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


# Trap: torch finds nvcc through a wrapper on PATH and guesses CUDA_HOME=/usr/local, which then
# fails to link cudart. torch reads CUDA_HOME when cpp_extension is imported, so set it first.
if not os.environ.get("CUDA_HOME") and os.path.isdir("/usr/local/cuda"):
    os.environ["CUDA_HOME"] = "/usr/local/cuda"
# Trap: with no arch list and no GPU, torch's arch detection can crash.
os.environ.setdefault("TORCH_CUDA_ARCH_LIST", "8.0;9.0")

import torch  # noqa: E402
from torch.utils import cpp_extension  # noqa: E402


def _want_cuda():
    if _flag("GWKCUDA_FORCE_CPU"):
        return False
    has_toolkit = cpp_extension.CUDA_HOME is not None and os.path.exists(
        os.path.join(cpp_extension.CUDA_HOME, "bin", "nvcc"))
    if _flag("GWKCUDA_FORCE_CUDA"):
        if torch.version.cuda is None:
            sys.exit("GWKCUDA_FORCE_CUDA=1 but the installed torch %s is a CPU-only build; "
                     "install a CUDA build of torch" % torch.__version__)
        if not has_toolkit:
            sys.exit("GWKCUDA_FORCE_CUDA=1 but no CUDA toolkit was found (CUDA_HOME=%r has no "
                     "bin/nvcc); set CUDA_HOME" % cpp_extension.CUDA_HOME)
        return True
    return torch.version.cuda is not None and has_toolkit


def _cuda_library_includes():
    """Trap: ATen's CUDA headers include cublas/cusparse/cusolver headers that a bare toolkit may
    lack; the nvidia-* wheels installed with a CUDA torch ship them."""
    try:
        import nvidia
    except ImportError:
        return []
    found = []
    for base in nvidia.__path__:
        found += sorted(glob.glob(os.path.join(base, "*", "include")))
    return [d for d in found if os.path.isdir(d)]


def _extension():
    sources = ["csrc/registration.cpp", "csrc/checks.cpp"] + sorted(glob.glob("csrc/cpu/*.cpp"))
    cxx_flags = ["-O3"]
    with_cuda = _want_cuda()
    if with_cuda:
        # Trap: x.cpp and x.cu in one folder both become x.o; CUDA sources carry their own stems.
        sources += sorted(glob.glob("csrc/cuda/*.cu"))
        archs = os.environ["TORCH_CUDA_ARCH_LIST"].replace(";", ",").replace(" ", ",")
        # Commas, not semicolons: the flag passes through a shell in the ninja build.
        cxx_flags += ["-DGWK_WITH_CUDA", '-DGWK_CUDA_ARCHS=\\"%s\\"' % archs]
        print("gwkcuda: building CPU and CUDA kernels for archs %s" % archs)
        return cpp_extension.CUDAExtension(
            "gwkcuda._C", sources,
            include_dirs=[os.path.join(ROOT, "csrc")] + _cuda_library_includes(),
            extra_compile_args={"cxx": cxx_flags, "nvcc": ["-O3", "-DGWK_WITH_CUDA"]})
    print("gwkcuda: building CPU kernels only (torch CUDA: %s, CUDA_HOME: %s)"
          % (torch.version.cuda, cpp_extension.CUDA_HOME))
    return cpp_extension.CppExtension(
        "gwkcuda._C", sources, include_dirs=[os.path.join(ROOT, "csrc")],
        extra_compile_args={"cxx": cxx_flags})


setup(
    packages=find_packages(include=["gwkcuda", "gwkcuda.*"]),
    ext_modules=[_extension()],
    cmdclass={"build_ext": cpp_extension.BuildExtension.with_options(use_ninja=True)},
)
