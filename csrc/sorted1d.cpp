#include "sorted1d.h"

#include <ATen/ATen.h>
#include <ATen/MemoryOverlap.h>

#include <limits>

#include "checks.h"
#include "core/kmeans1d_sorted.h"
#include "kmeans_checks.h"

namespace gwk {

namespace {
// [B, N, 1] -> [B, N]; anything else is returned as is (and refused by the caller's shape check).
at::Tensor scalar_points(const at::Tensor& t) { return t.dim() == 3 && t.size(2) == 1 ? t.squeeze(2) : t; }

void check_like(const char* op, const char* name, const at::Tensor& t, const at::Tensor& xs, at::ScalarType dtype,
                at::IntArrayRef sizes, const char* made_by) {
  TORCH_CHECK(t.scalar_type() == dtype && t.sizes() == sizes && t.is_contiguous() && t.device() == xs.device(), op,
              ": expected ", name, " as ", made_by, " (contiguous ", dtype, " ", sizes, " on ", xs.device(), "), got ",
              t.scalar_type(), " ", shape_of(t), " on ", t.device());
}
}  // namespace

SortInputs prepare_sort(const at::Tensor& x_in, const std::optional<at::Tensor>& weight) {
  const char* op = "kmeans1d_sort";
  const at::Tensor x = scalar_points(x_in);
  TORCH_CHECK(x.dim() == 2, op, ": expected scalar points x of shape [B, N] or [B, N, 1], got ", shape_of(x_in));
  TORCH_CHECK(at::isFloatingType(x.scalar_type()), op, ": expected floating-point x, got ", x.scalar_type());
  TORCH_CHECK(x.size(0) >= 1 && x.size(1) >= 1, op, ": expected at least one problem of one point, got ",
              shape_of(x_in));
  TORCH_CHECK(x.size(1) <= std::numeric_limits<int32_t>::max(), op,
              ": expected at most 2^31 - 1 points per problem, got ", x.size(1));
  SortInputs in;
  in.B = x.size(0);
  in.N = x.size(1);
  in.blocks = sorted1d::num_blocks(in.N);
  const auto acc = accumulate_type(x);
  in.x = x.to(acc).contiguous();
  if (weight.has_value()) {
    check_weight(op, x.unsqueeze(2), *weight);
    in.weight = weight->to(acc).contiguous();
  }
  in.xs = at::empty_like(in.x);
  in.order = at::empty({in.B, in.N}, in.x.options().dtype(at::kInt));
  in.heads = at::empty({in.B, in.blocks}, in.x.options());
  in.prefix = at::empty({in.B, in.blocks + 1, sorted1d::kFields}, in.x.options().dtype(at::kDouble));
  in.shift = at::empty({in.B}, in.x.options().dtype(at::kDouble));
  return in;
}

at::Tensor check_sorted_state(const char* op, const at::Tensor& xs, const at::Tensor& order, const at::Tensor& heads,
                              const std::optional<at::Tensor>& weight, const at::Tensor* prefix,
                              const at::Tensor* shift, const at::Tensor& centroids_in) {
  TORCH_CHECK(xs.dim() == 2 && (xs.scalar_type() == at::kFloat || xs.scalar_type() == at::kDouble) &&
                  xs.is_contiguous(),
              op, ": expected sorted points xs as kmeans1d_sort returns them (contiguous float32 or float64 [B, N]), "
              "got ", xs.scalar_type(), " ", shape_of(xs));
  const int64_t B = xs.size(0), N = xs.size(1);
  const char* sort = "kmeans1d_sort returns it";
  check_like(op, "order", order, xs, at::kInt, {B, N}, sort);
  check_like(op, "heads", heads, xs, xs.scalar_type(), {B, sorted1d::num_blocks(N)}, sort);
  if (prefix != nullptr) check_like(op, "prefix", *prefix, xs, at::kDouble, {B, sorted1d::num_blocks(N) + 1, sorted1d::kFields}, sort);
  if (shift != nullptr) check_like(op, "shift", *shift, xs, at::kDouble, {B}, sort);
  if (weight.has_value()) check_like(op, "weight", *weight, xs, xs.scalar_type(), {B, N}, "given to kmeans1d_sort");
  const at::Tensor c = scalar_points(centroids_in);
  TORCH_CHECK(c.dim() == 2 && c.size(0) == B && c.size(1) >= 1 && at::isFloatingType(c.scalar_type()), op,
              ": expected centroids of shape [B, k, 1] = [", B, ", k, 1] with k >= 1, got ", shape_of(centroids_in));
  TORCH_CHECK(c.device() == xs.device(), op, ": expected centroids on ", xs.device(), ", got ", c.device());
  return c.to(xs.scalar_type()).contiguous();
}

void check_sorted_labels(const at::Tensor& xs, const at::Tensor& order, const at::Tensor& labels) {
  TORCH_CHECK((labels.scalar_type() == at::kLong || labels.scalar_type() == at::kInt) && labels.dim() == 2 &&
                  labels.size(0) == xs.size(0) && labels.size(1) == xs.size(1) && labels.is_contiguous() &&
                  labels.device() == xs.device(),
              "kmeans1d_sorted_assign: expected a contiguous int64 or int32 labels buffer of shape [", xs.size(0), ", ",
              xs.size(1), "] on ", xs.device(), ", got ", labels.scalar_type(), " ", shape_of(labels), " on ",
              labels.device());
  for (const at::Tensor* t : {&xs, &order})
    TORCH_CHECK(at::get_overlap_status(labels, *t) == at::MemOverlapStatus::No,
                "kmeans1d_sorted_assign: expected a labels buffer of its own, but it shares memory with an input");
}

void fail_bad_point(const at::Tensor& x) {
  const auto where = at::logical_not(at::isfinite(x)).nonzero();
  if (where.numel() == 0) TORCH_CHECK(false, "kmeans1d_sort: expected finite points");
  const int64_t b = where[0][0].item<int64_t>(), i = where[0][1].item<int64_t>();
  TORCH_CHECK(false, "kmeans1d_sort: expected finite points, got ", x[b][i].item<double>(), " at [", b, ", ", i, "]");
}

void fail_bad_weight(const at::Tensor& weight) { TORCH_CHECK(false, describe_bad_weight("kmeans1d_sort", weight)); }

}  // namespace gwk
