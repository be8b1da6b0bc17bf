// Input validation of the EWGS quantiser ops, shared by the CPU and CUDA entry points.
#pragma once

#include <ATen/core/Tensor.h>

namespace gwk {

// x floating point; lower, upper and delta 0-d floating-point tensors on x's device; levels in
// 2..2**16; grad (when defined) of x's shape and dtype.
void check_ewgs_args(const char* op, const at::Tensor& x, const at::Tensor& lower, const at::Tensor& upper,
                     int64_t levels, const at::Tensor& delta, const at::Tensor& grad = at::Tensor());

// The memory layout the ops compute in, element by element in memory order: channels-last for a
// 4-d x stored so (an image batch from HWC data), else contiguous. q and grad_x take it, so the
// op hands the next layer the layout the torch ops would have.
at::MemoryFormat ewgs_layout(const at::Tensor& x);

}  // namespace gwk
