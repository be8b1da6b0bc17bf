#include "ewgs_checks.h"

#include <ATen/ATen.h>

#include "checks.h"

namespace gwk {

void check_ewgs_args(const char* op, const at::Tensor& x, const at::Tensor& lower, const at::Tensor& upper,
                     int64_t levels, const at::Tensor& delta, const at::Tensor& grad) {
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), op, ": expected a floating-point x, got ", x.scalar_type());
  TORCH_CHECK(levels >= 2 && levels <= (int64_t{1} << 16), op, ": expected levels in 2..65536, got ", levels);
  for (const auto& [name, t] : {std::pair<const char*, const at::Tensor&>{"lower", lower}, {"upper", upper},
                                {"delta", delta}}) {
    TORCH_CHECK(t.dim() == 0 && at::isFloatingType(t.scalar_type()), op, ": expected ", name,
                " a 0-d floating-point tensor, got ", t.scalar_type(), " of shape ", shape_of(t));
    TORCH_CHECK(t.device() == x.device(), op, ": expected ", name, " on x's device ", x.device(), ", got ",
                t.device());
  }
  if (grad.defined()) {
    TORCH_CHECK(grad.sizes() == x.sizes() && grad.scalar_type() == x.scalar_type() && grad.device() == x.device(),
                op, ": expected grad like x (", x.scalar_type(), " ", shape_of(x), " on ", x.device(), "), got ",
                grad.scalar_type(), " ", shape_of(grad), " on ", grad.device());
  }
}

at::MemoryFormat ewgs_layout(const at::Tensor& x) {
  return x.dim() == 4 && !x.is_contiguous() && x.is_contiguous(at::MemoryFormat::ChannelsLast)
             ? at::MemoryFormat::ChannelsLast
             : at::MemoryFormat::Contiguous;
}

}  // namespace gwk
