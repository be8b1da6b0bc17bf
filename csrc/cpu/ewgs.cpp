// CPU implementation of ewgs_quantize / ewgs_quantize_backward (math: csrc/core/ewgs.h): one pass
// over x each way, where the torch ops it replaces make about a dozen.
//
// The loops are built per x86-64 level like the other hot loops (cpu_level.h), with
// no-trapping-math as well: without it GCC keeps the clamp's branches and does not vectorize the
// loop. No value changes (contraction stays off). The backward's sums over x are taken in float64
// over fixed chunks of kChunk elements and added in chunk order, so they do not depend on the
// thread count.
#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <torch/library.h>

#include <vector>

#include "../core/ewgs.h"
#include "../ewgs_checks.h"
#include "cpu_level.h"
#include "parallel.h"

namespace gwk {
namespace {

constexpr int64_t kChunk = 1 << 14;

#if GWK_CPU_LEVELS
#define GWK_EWGS_V4 __attribute__((target("arch=x86-64-v4"), optimize("no-trapping-math", "fp-contract=off")))
#define GWK_EWGS_V3 __attribute__((target("arch=x86-64-v3"), optimize("no-trapping-math", "fp-contract=off")))
#define GWK_EWGS_BASE __attribute__((optimize("no-trapping-math", "fp-contract=off")))
#else
#define GWK_EWGS_V4
#define GWK_EWGS_V3
#define GWK_EWGS_BASE
#endif

// Like cpu::Clones, with no-trapping-math on each build.
template <typename Body>
struct SpeculativeClones {
  template <typename... A>
  GWK_EWGS_V4 static void v4(A... a) { Body::run(a...); }
  template <typename... A>
  GWK_EWGS_V3 static void v3(A... a) { Body::run(a...); }
  template <typename... A>
  GWK_EWGS_BASE static void baseline(A... a) { Body::run(a...); }
  template <typename... A>
  static void run(A... a) {
    switch (cpu::level()) {
      case cpu::kV4: return v4(a...);
      case cpu::kV3: return v3(a...);
      default: return baseline(a...);
    }
  }
};

template <typename scalar_t>
struct ForwardLoop {
  using acc_t = acc_type_t<scalar_t>;
  static GWK_LOOP_BODY void run(const scalar_t* x, scalar_t* q, int64_t n, acc_t lower, acc_t span, acc_t steps) {
    for (int64_t i = 0; i < n; ++i)
      q[i] = static_cast<scalar_t>(ewgs::quantize(static_cast<acc_t>(x[i]), lower, span, steps));
  }
};

// dL/dx for n elements, and their float64 sums of dL/dx and of the dL/dspan terms, each summed in
// kLanes interleaved partial sums added in lane order: a fixed order that still vectorizes.
constexpr int kLanes = 8;

template <typename scalar_t>
struct BackwardLoop {
  using acc_t = acc_type_t<scalar_t>;
  static GWK_LOOP_BODY void element(const scalar_t* g, const scalar_t* x, scalar_t* gx, int64_t i, acc_t lower,
                                    acc_t span, acc_t steps, acc_t delta, double& sum_gx, double& sum_dspan) {
    acc_t dspan;
    const acc_t d = ewgs::backward(static_cast<acc_t>(g[i]), static_cast<acc_t>(x[i]), lower, span, steps, delta, &dspan);
    gx[i] = static_cast<scalar_t>(d);
    sum_gx += d;
    sum_dspan += dspan;
  }
  static GWK_LOOP_BODY void run(const scalar_t* g, const scalar_t* x, scalar_t* gx, int64_t n, acc_t lower,
                                acc_t span, acc_t steps, acc_t delta, double* sums) {
    double sum_gx[kLanes] = {}, sum_dspan[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes)
      for (int lane = 0; lane < kLanes; ++lane)
        element(g, x, gx, i + lane, lower, span, steps, delta, sum_gx[lane], sum_dspan[lane]);
    for (int lane = 0; i < n; ++i, ++lane) element(g, x, gx, i, lower, span, steps, delta, sum_gx[lane], sum_dspan[lane]);
    sums[0] = sums[1] = 0;
    for (int lane = 0; lane < kLanes; ++lane) {
      sums[0] += sum_gx[lane];
      sums[1] += sum_dspan[lane];
    }
  }
};

at::Tensor ewgs_quantize_cpu(const at::Tensor& x_in, const at::Tensor& lower, const at::Tensor& upper, int64_t levels,
                             const at::Tensor& delta) {
  check_ewgs_args("ewgs_quantize", x_in, lower, upper, levels, delta);
  const auto layout = ewgs_layout(x_in);
  const auto x = x_in.contiguous(layout);
  auto q = at::empty(x.sizes(), x.options().memory_format(layout));
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "ewgs_quantize_cpu", [&] {
    using acc_t = acc_type_t<scalar_t>;
    // The bounds as the torch ops see them: each in its own dtype, the span one subtraction.
    const acc_t lo = static_cast<acc_t>(lower.item<double>());
    const acc_t span = static_cast<acc_t>(upper.item<double>()) - lo;
    const acc_t steps = static_cast<acc_t>(levels - 1);
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* qp = q.mutable_data_ptr<scalar_t>();
    cpu::parallel_chunks(x.numel(), kChunk, [&](int64_t begin, int64_t end, int) {
      SpeculativeClones<ForwardLoop<scalar_t>>::run(xp + begin, qp + begin, end - begin, lo, span, steps);
    });
  });
  return q;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> ewgs_quantize_backward_cpu(const at::Tensor& grad_in, const at::Tensor& x_in,
                                                                          const at::Tensor& lower, const at::Tensor& upper,
                                                                          int64_t levels, const at::Tensor& delta) {
  check_ewgs_args("ewgs_quantize_backward", x_in, lower, upper, levels, delta, grad_in);
  const auto layout = ewgs_layout(x_in);
  const auto x = x_in.contiguous(layout);
  const auto grad = grad_in.contiguous(layout);
  auto grad_x = at::empty(x.sizes(), x.options().memory_format(layout));
  const int64_t n = x.numel();
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  std::vector<double> sums(2 * chunks, 0.0);
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, x.scalar_type(), "ewgs_quantize_backward_cpu", [&] {
    using acc_t = acc_type_t<scalar_t>;
    const acc_t lo = static_cast<acc_t>(lower.item<double>());
    const acc_t span = static_cast<acc_t>(upper.item<double>()) - lo;
    const acc_t steps = static_cast<acc_t>(levels - 1);
    const acc_t d = static_cast<acc_t>(delta.item<double>());
    const scalar_t* gp = grad.const_data_ptr<scalar_t>();
    const scalar_t* xp = x.const_data_ptr<scalar_t>();
    scalar_t* gxp = grad_x.mutable_data_ptr<scalar_t>();
    // One chunk per parallel_chunks item, so each chunk's sums have a fixed place.
    cpu::parallel_chunks(chunks, 1, [&](int64_t c0, int64_t c1, int) {
      for (int64_t c = c0; c < c1; ++c) {
        const int64_t begin = c * kChunk, len = std::min(kChunk, n - begin);
        SpeculativeClones<BackwardLoop<scalar_t>>::run(gp + begin, xp + begin, gxp + begin, len, lo, span, steps, d,
                                                       sums.data() + 2 * c);
      }
    });
  });
  double sum_gx = 0, sum_dspan = 0;
  for (int64_t c = 0; c < chunks; ++c) {
    sum_gx += sums[2 * c];
    sum_dspan += sums[2 * c + 1];
  }
  auto grad_lower = at::full({}, -(sum_gx + sum_dspan), lower.options());
  auto grad_upper = at::full({}, sum_dspan, upper.options());
  return {grad_x, grad_lower, grad_upper};
}

}  // namespace

TORCH_LIBRARY_IMPL(gwkcuda, CPU, m) {
  m.impl("ewgs_quantize", &ewgs_quantize_cpu);
  m.impl("ewgs_quantize_backward", &ewgs_quantize_backward_cpu);
}

}  // namespace gwk
