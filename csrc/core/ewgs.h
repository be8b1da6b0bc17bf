// EWGS quantisation of one element (gwkcuda/ewgs.py, paper-spec 4.1), defined once for the CPU
// loops and the CUDA kernels. With span = upper - lower and steps = levels - 1:
//     t = (x - lower) / span,  c = clamp(t, 0, 1),  q = round(c * steps) / steps
// (round half to even, as torch.round). The backward of q with respect to x, lower and upper,
// given g = dL/dq, is what autograd computes through those torch ops: EWGS scales g to
//     g_c = g * (1 + delta * sign(g) * (c - q)),
// the clamp passes it where 0 <= t <= 1 (torch.clamp's rule up to torch 2.13; 2.14's passes
// nothing at exactly 0 or 1: here one rule on every version), and the division and subtractions
// give dL/dx = g_t / span, dL/dspan = -g_t * t / span (summed over the elements),
// dL/dlower = -(sum dL/dx + dL/dspan), dL/dupper = dL/dspan.
#pragma once

#include <math.h>

#include "macros.h"

namespace gwk {
namespace ewgs {

template <typename acc_t>
GWK_HOST_DEVICE acc_t clamp01(acc_t t) {
  return t < acc_t(0) ? acc_t(0) : (t > acc_t(1) ? acc_t(1) : t);  // NaN stays NaN, as in torch.clamp
}

template <typename acc_t>
GWK_HOST_DEVICE acc_t round_half_even(acc_t v) {
#if defined(__CUDA_ARCH__)
  return rint(v);  // float and double overloads
#else
  // The builtins, not std::rint: GCC then vectorises the CPU loops (cpu/ewgs.cpp).
  if constexpr (sizeof(acc_t) == sizeof(float)) {
    return __builtin_rintf(v);
  } else {
    return __builtin_rint(v);
  }
#endif
}

// q for one element.
template <typename acc_t>
GWK_HOST_DEVICE acc_t quantize(acc_t x, acc_t lower, acc_t span, acc_t steps) {
  return round_half_even(clamp01((x - lower) / span) * steps) / steps;
}

// One element's backward: returns dL/dx and sets *dspan to its term of dL/dspan.
template <typename acc_t>
GWK_HOST_DEVICE acc_t backward(acc_t g, acc_t x, acc_t lower, acc_t span, acc_t steps, acc_t delta, acc_t* dspan) {
  const acc_t shifted = x - lower;
  const acc_t t = shifted / span;
  const acc_t c = clamp01(t);
  const acc_t q = round_half_even(c * steps) / steps;
  const acc_t sign = g > acc_t(0) ? acc_t(1) : (g < acc_t(0) ? acc_t(-1) : acc_t(0));
  const acc_t g_c = g * (acc_t(1) + delta * sign * (c - q));
  const acc_t g_t = (t >= acc_t(0) && t <= acc_t(1)) ? g_c : acc_t(0);
  *dspan = -g_t * (t / span);  // autograd's order for a / b's b: -g * ((a / b) / b)
  return g_t / span;
}

}  // namespace ewgs
}  // namespace gwk
