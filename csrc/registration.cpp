// Every op schema of the gwkcuda library, and the Python module that loads it.
// Backends (csrc/cpu, csrc/cuda) only add TORCH_LIBRARY_IMPL blocks; fake (meta) kernels and
// autograd formulas are registered from Python (gwkcuda/ops.py).
#include <torch/extension.h>
#include <torch/version.h>

#include <string>

#include "generated/build_config.h"

TORCH_LIBRARY(gwkcuda, m) {
  // Packs integer codes in [0, 2**nbits) (any shape, read flat) into an LSB-first uint8 bit stream
  // of ceil(numel*nbits/8) bytes; nbits in 1..16. Layout: csrc/core/bitpack.h.
  m.def("pack_bits(Tensor codes, int nbits) -> Tensor");
  // The inverse of pack_bits: the first `numel` codes of a packed stream, as int32 [numel].
  m.def("unpack_bits(Tensor packed, int nbits, int numel) -> Tensor");
}

namespace {
pybind11::dict build_info() {
  pybind11::dict info;
  info["torch_version"] = std::to_string(TORCH_VERSION_MAJOR) + "." +
                          std::to_string(TORCH_VERSION_MINOR) + "." +
                          std::to_string(TORCH_VERSION_PATCH);
#ifdef GWK_WITH_CUDA
  info["cuda_compiled"] = true;
#else
  info["cuda_compiled"] = false;
#endif
  info["cuda_archs"] = std::string(GWK_CUDA_ARCHS);
  return info;
}
}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.doc() = "gwkcuda kernels; the ops live under torch.ops.gwkcuda";
  m.def("build_info", &build_info,
        "Build facts: torch_version (built against), cuda_compiled (bool), cuda_archs (str).");
}
