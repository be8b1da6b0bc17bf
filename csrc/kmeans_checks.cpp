#include "kmeans_checks.h"

#include <ATen/ATen.h>
#include <ATen/MemoryOverlap.h>

#include <sstream>
#include <utility>

#include "checks.h"

namespace gwk {

namespace {

void check_float(const char* op, const char* name, const at::Tensor& t) {
  TORCH_CHECK(at::isFloatingType(t.scalar_type()), op, ": expected ", name,
              " of a floating-point dtype (float32, float64, float16, bfloat16), got ",
              t.scalar_type());
}
}  // namespace

void check_points_and_centroids(const char* op, const at::Tensor& x, const at::Tensor& centroids) {
  TORCH_CHECK(x.dim() == 3, op, ": expected x of shape [B, N, d], got ", shape_of(x));
  check_float(op, "x", x);
  TORCH_CHECK(centroids.dim() == 3, op, ": expected centroids of shape [B, k, d], got ",
              shape_of(centroids));
  check_float(op, "centroids", centroids);
  TORCH_CHECK(centroids.size(0) == x.size(0) && centroids.size(2) == x.size(2), op,
              ": expected centroids [B, k, d] to match x [B, N, d] = ", shape_of(x), " in B and d, got ",
              shape_of(centroids));
  TORCH_CHECK(centroids.size(1) >= 1, op, ": expected at least one centroid (k >= 1), got k = ",
              centroids.size(1));
  TORCH_CHECK(x.size(2) >= 1, op, ": expected sub-vectors of length d >= 1, got d = ", x.size(2));
  TORCH_CHECK(centroids.device() == x.device(), op, ": expected centroids on ", x.device(), ", got ",
              centroids.device());
}

void check_weight(const char* op, const at::Tensor& x, const at::Tensor& weight) {
  if (!weight.defined()) return;
  check_float(op, "weight", weight);
  TORCH_CHECK(weight.dim() == 2 && weight.size(0) == x.size(0) && weight.size(1) == x.size(1), op,
              ": expected weight of shape [B, N] = [", x.size(0), ", ", x.size(1), "], got ",
              shape_of(weight));
  TORCH_CHECK(weight.device() == x.device(), op, ": expected weight on ", x.device(), ", got ",
              weight.device());
}

void check_labels(const char* op, const at::Tensor& x, const at::Tensor& labels, int64_t k) {
  check_float(op, "x", x);
  TORCH_CHECK(x.size(2) >= 1, op, ": expected sub-vectors of length d >= 1, got d = ", x.size(2));
  TORCH_CHECK(k >= 1, op, ": expected k >= 1, got ", k);
  TORCH_CHECK(labels.scalar_type() == at::kLong || labels.scalar_type() == at::kInt, op,
              ": expected int64 or int32 labels, got ", labels.scalar_type());
  TORCH_CHECK(labels.dim() == 2 && labels.size(0) == x.size(0) && labels.size(1) == x.size(1), op,
              ": expected labels of shape [B, N] = [", x.size(0), ", ", x.size(1), "], got ",
              shape_of(labels));
  TORCH_CHECK(labels.device() == x.device(), op, ": expected labels on ", x.device(), ", got ",
              labels.device());
}

at::ScalarType accumulate_type(const at::Tensor& x) {
  return x.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

KMeansInputs prepare_inputs(const char* op, const at::Tensor& x, const std::optional<at::Tensor>& weight,
                            const at::Tensor* centroids, const at::Tensor* labels, int64_t k) {
  KMeansInputs in;
  TORCH_CHECK(x.dim() == 3, op, ": expected x of shape [B, N, d], got ", shape_of(x));
  if (centroids != nullptr) {
    check_points_and_centroids(op, x, *centroids);
    k = centroids->size(1);
  }
  const at::Tensor w = weight.has_value() ? *weight : at::Tensor();
  check_weight(op, x, w);
  if (labels != nullptr) check_labels(op, x, *labels, k);
  in.acc = accumulate_type(x);
  in.given_x = x;
  in.given_weight = w;
  if (centroids != nullptr) in.given_centroids = *centroids;
  in.x = x.to(in.acc).contiguous();
  if (w.defined()) in.weight = w.to(in.acc).contiguous();
  if (centroids != nullptr) in.centroids = centroids->to(in.acc).contiguous();
  if (labels != nullptr) in.labels = labels->to(at::kLong).contiguous();
  in.B = x.size(0);
  in.N = x.size(1);
  in.d = x.size(2);
  in.k = k;
  return in;
}

void check_labels_out(const char* op, const KMeansInputs& in, const at::Tensor& labels) {
  TORCH_CHECK((labels.scalar_type() == at::kLong || labels.scalar_type() == at::kInt) &&
                  labels.dim() == 2 && labels.size(0) == in.B && labels.size(1) == in.N &&
                  labels.is_contiguous(),
              op, ": expected a contiguous int64 or int32 labels buffer of shape [", in.B, ", ", in.N,
              "], got ", labels.scalar_type(), " ", shape_of(labels));
  TORCH_CHECK(labels.device() == in.x.device(), op, ": expected labels on ", in.x.device(), ", got ",
              labels.device());
  const std::pair<const char*, const at::Tensor*> inputs[] = {
      {"x", &in.given_x}, {"weight", &in.given_weight}, {"centroids", &in.given_centroids}};
  for (const auto& [name, t] : inputs) {
    TORCH_CHECK(!t->defined() || at::get_overlap_status(labels, *t) == at::MemOverlapStatus::No, op,
                ": expected a labels buffer of its own, but it shares memory with ", name,
                " (the labels would overwrite it)");
  }
}

namespace {
// Where a weight is not finite and >= 0, and where a label is outside [0, k): one definition for
// the checks and their messages.
at::Tensor invalid_weights(const at::Tensor& weight) {
  const auto w = weight.to(at::kDouble);
  return at::logical_or(w.lt(0), at::logical_not(at::isfinite(w)));
}

at::Tensor invalid_labels(const at::Tensor& labels, int64_t k) {
  const auto l = labels.to(at::kLong);
  return at::logical_or(l.lt(0), l.ge(k));
}
}  // namespace

void check_weight_values(const char* op, const at::Tensor& weight) {
  if (weight.defined()) TORCH_CHECK(!invalid_weights(weight).any().item<bool>(), describe_bad_weight(op, weight));
}

void check_label_values(const char* op, const at::Tensor& labels, int64_t k) {
  TORCH_CHECK(!invalid_labels(labels, k).any().item<bool>(), describe_bad_label(op, labels, k));
}

std::string describe_bad_weight(const char* op, const at::Tensor& weight) {
  std::ostringstream msg;
  msg << op << ": expected every weight finite and >= 0, got ";
  const auto where = invalid_weights(weight).nonzero();
  if (where.numel() == 0) return msg.str() + "an invalid weight";
  const int64_t b = where[0][0].item<int64_t>(), i = where[0][1].item<int64_t>();
  msg << weight[b][i].item<double>() << " at [" << b << ", " << i << "] (" << where.size(0)
      << " invalid)";
  return msg.str();
}

std::string describe_bad_label(const char* op, const at::Tensor& labels, int64_t k) {
  std::ostringstream msg;
  msg << op << ": expected every label in [0, " << k << "), got ";
  const auto where = invalid_labels(labels, k).nonzero();
  if (where.numel() == 0) return msg.str() + "a label out of range";
  const int64_t b = where[0][0].item<int64_t>(), i = where[0][1].item<int64_t>();
  msg << labels[b][i].item<int64_t>() << " at [" << b << ", " << i << "]";
  return msg.str();
}

}  // namespace gwk
