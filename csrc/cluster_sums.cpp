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
  const auto problem = at::arange(B, labels.options().dtype(at::kLong)).repeat_interleave(N);
  const auto key = labels.to(at::kLong).reshape({B * N}) + problem * k;
  const auto order = std::get<1>(key.sort(/*stable=*/true, /*dim=*/0, /*descending=*/false));
  const auto values = at::cat({points * w, w}, 1).index_select(0, order);  // [B * N, d + 1]
  const auto lengths = at::bincount(key, /*weights=*/{}, /*minlength=*/B * k);
  const auto totals = at::segment_reduce(values, "sum", lengths, /*indices=*/{}, /*offsets=*/{}, /*axis=*/0,
                                         /*unsafe=*/true, /*initial=*/at::Scalar(0.0));
  return {totals.narrow(1, 0, d).reshape({B, k, d}), totals.select(1, d).reshape({B, k})};
}

}  // namespace gwk
