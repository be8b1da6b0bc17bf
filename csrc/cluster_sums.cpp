#include "cluster_sums.h"

#include <ATen/ATen.h>

namespace gwk {

std::tuple<at::Tensor, at::Tensor> cluster_sums_sorted(const at::Tensor& x, const at::Tensor& weight,
                                                       const at::Tensor& labels, int64_t k) {
  TORCH_CHECK(x.dim() == 3 && labels.dim() == 2 && labels.size(0) == x.size(0) && labels.size(1) == x.size(1),
              "cluster_sums_sorted: expected x [B, N, d] and labels [B, N], got ", x.sizes(), " and ",
              labels.sizes());
  const int64_t B = x.size(0), N = x.size(1), d = x.size(2);
  const auto points = x.to(at::kDouble).reshape({B * N, d});
  const auto w = weight.defined() ? weight.to(at::kDouble).reshape({B * N, 1})
                                  : at::ones({B * N, 1}, points.options());
  // key = b * k + label: sorting by it groups each problem's clusters, in cluster order.
  const auto first_key = at::arange(B, labels.options().dtype(at::kLong)).mul_(k).unsqueeze(1);  // [B, 1]
  const auto key = labels.to(at::kLong).add(first_key).reshape({B * N});
  const auto sorted = key.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false);
  const auto& sorted_key = std::get<0>(sorted);
  const auto values = at::cat({points * w, w}, 1).index_select(0, std::get<1>(sorted));  // [B * N, d + 1]
  // Cluster c's points are the run [offsets[c], offsets[c + 1]) of the sorted keys, found by binary
  // search: nothing is read back to the host (bincount would read the largest key to size its
  // output: one sync per Lloyd step on CUDA).
  const auto offsets = at::searchsorted(sorted_key, at::arange(B * k + 1, sorted_key.options()));
  const auto totals = at::segment_reduce(values, "sum", /*lengths=*/{}, /*indices=*/{}, offsets, /*axis=*/0,
                                         /*unsafe=*/true, /*initial=*/at::Scalar(0.0));
  return {totals.narrow(1, 0, d).reshape({B, k, d}), totals.select(1, d).reshape({B, k})};
}

}  // namespace gwk
