#include "kmeans_block_emulation.h"

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>

#include <type_traits>
#include <vector>

#include "core/kmeans.h"
#include "core/kmeans_block.h"
#include "kmeans_checks.h"

namespace gwk {
namespace {

// Problem b's step as the kernel runs it, each barrier the end of a loop over all thread indices.
template <typename acc_t, typename label_t, int D>
void emulate_block(const KMeansInputs& in, const kmeans::block::Layout& L, int64_t b, label_t* labels,
                   acc_t* new_centroids, acc_t* cluster_weight, acc_t* inertia) {
  namespace block = kmeans::block;
  std::vector<double> shared((L.bytes + 7) / 8);
  const auto p = block::problem(L, b, shared.data(), in.x.const_data_ptr<acc_t>(),
                                in.weight.defined() ? in.weight.const_data_ptr<acc_t>() : nullptr,
                                in.centroids.const_data_ptr<acc_t>(), labels, new_centroids, cluster_weight, inertia);
  for (int phase = 0; phase < block::kPhases; ++phase) {
    for (int t = 0; t < L.threads; ++t) block::run_phase<acc_t, label_t, D>(phase, t, L, p);
  }
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, int64_t> lloyd_block_emulated(
    const at::Tensor& x, const std::optional<at::Tensor>& weight, const at::Tensor& centroids, int64_t threads,
    bool int32_labels) {
  const char* op = "lloyd_block_emulated";
  TORCH_CHECK(x.device().is_cpu(), op, ": expected CPU tensors, got x on ", x.device());
  TORCH_CHECK(threads >= 1 && threads <= 1024, op, ": expected threads in [1, 1024], got ", threads);
  const auto in = prepare_inputs(op, x, weight, &centroids, nullptr, 0);
  const auto L = kmeans::block::layout(in.N, static_cast<int>(in.d), in.k, static_cast<int>(threads),
                                       at::elementSize(in.acc));
  auto labels = at::empty({in.B, in.N}, in.x.options().dtype(int32_labels ? at::kInt : at::kLong));
  auto new_centroids = at::empty_like(in.centroids);
  auto cluster_weight = at::empty({in.B, in.k}, in.x.options());
  auto inertia = at::empty({in.B}, in.x.options());
  AT_DISPATCH_FLOATING_TYPES(in.acc, "lloyd_block_emulated", [&] {
    kmeans::with_point_length(static_cast<int>(in.d), [&](auto d_constant) {
      constexpr int D = decltype(d_constant)::value;
      for (int64_t b = 0; b < in.B; ++b) {
        const auto run = [&](auto* lab) {
          emulate_block<scalar_t, std::remove_pointer_t<decltype(lab)>, D>(
              in, L, b, lab, new_centroids.mutable_data_ptr<scalar_t>(), cluster_weight.mutable_data_ptr<scalar_t>(),
              inertia.mutable_data_ptr<scalar_t>());
        };
        with_label_pointer(labels, run);
      }
    });
  });
  return {new_centroids, labels, cluster_weight, inertia, static_cast<int64_t>(L.bytes)};
}

}  // namespace gwk
