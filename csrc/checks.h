// Input validation shared by the CPU and CUDA entry points. Each check raises a c10::Error whose
// message says what was expected and what was given.
#pragma once

#include <ATen/core/Tensor.h>

#include <string>

namespace gwk {

// A tensor's sizes as text, e.g. "[2, 3]", for error messages.
std::string shape_of(const at::Tensor& t);

// nbits in 1..16, an integer codes tensor.
void check_pack_args(const at::Tensor& codes, int64_t nbits);

// nbits in 1..16, a uint8 packed buffer long enough for `numel` codes, numel >= 0.
void check_unpack_args(const at::Tensor& packed, int64_t nbits, int64_t numel);

// Describes the first code outside [0, 2**nbits) (index and value); called only once a kernel has
// reported that one exists, so the common path pays nothing for the detail.
std::string describe_bad_code(const at::Tensor& codes, int64_t nbits);

}  // namespace gwk
