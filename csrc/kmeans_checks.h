// Input validation of the k-means op family, shared by the CPU and CUDA entry points.
#pragma once

#include <ATen/core/Tensor.h>
#include <optional>

#include <string>

namespace gwk {

// x [B, N, d] floating point; centroids [B, k, d] with k >= 1, same B and d.
void check_points_and_centroids(const char* op, const at::Tensor& x, const at::Tensor& centroids);

// weight (when defined) [B, N] floating point, matching x.
void check_weight(const char* op, const at::Tensor& x, const at::Tensor& weight);

// labels [B, N] int64 (or int32) matching x; k >= 1.
void check_labels(const char* op, const at::Tensor& x, const at::Tensor& labels, int64_t k);

// Accumulation dtype of an op over x: float64 for float64 x, float32 otherwise (float16 and
// bfloat16 inputs are accumulated in float32).
at::ScalarType accumulate_type(const at::Tensor& x);

// The inputs of a k-means op after validation: contiguous, in the accumulation dtype (labels as
// int64); undefined tensors for what the op does not take.
struct KMeansInputs {
  at::Tensor x, weight, centroids, labels;
  at::Tensor given_x, given_weight, given_centroids;  // as the caller passed them (for alias checks)
  at::ScalarType acc = at::kFloat;
  int64_t B = 0, N = 0, d = 0, k = 0;
};

// Validates and prepares the inputs of `op`: pass centroids for the ops that take them (k is then
// theirs), labels and k for cluster_reduce.
KMeansInputs prepare_inputs(const char* op, const at::Tensor& x, const std::optional<at::Tensor>& weight,
                            const at::Tensor* centroids, const at::Tensor* labels, int64_t k);

// A caller-provided labels buffer: int64 or int32 [B, N], contiguous, on x's device, sharing no
// memory with the op's inputs (writing labels into x would overwrite the points).
void check_labels_out(const char* op, const KMeansInputs& in, const at::Tensor& labels);

// Calls f with labels' data as int32_t* or int64_t*, its dtype (the two a labels buffer may have;
// checked by check_labels / check_labels_out).
template <typename F>
void with_label_pointer(at::Tensor& labels, F&& f) {
  if (labels.scalar_type() == at::kInt) {
    f(labels.mutable_data_ptr<int32_t>());
  } else {
    f(labels.mutable_data_ptr<int64_t>());
  }
}

// Raise (with the first offender) unless every weight (when defined) is finite and >= 0, or every
// label is in [0, k): one reduction over the tensor, so one host sync on a GPU.
void check_weight_values(const char* op, const at::Tensor& weight);
void check_label_values(const char* op, const at::Tensor& labels, int64_t k);

// Called once a kernel has flagged a bad weight or label: the first offender, by index.
std::string describe_bad_weight(const char* op, const at::Tensor& weight);
std::string describe_bad_label(const char* op, const at::Tensor& labels, int64_t k);

}  // namespace gwk
