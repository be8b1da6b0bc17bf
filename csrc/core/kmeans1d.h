// The math of exact (optimal) weighted 1-D k-means, defined once: the sum of squared errors of a
// run of sorted points from prefix sums. For points sorted by value, an optimal clustering into k
// groups is k contiguous runs (a point is never closer to a farther centroid), so the problem is a
// shortest path over run boundaries; the run cost below satisfies the quadrangle inequality, so
// the best start of the last run never moves left as its end moves right (monotone splits).
//
// Prefix sums over the sorted points, index 0 = empty prefix:
//   W[i] = sum of w, S[i] = sum of w * y, Q[i] = sum of w * y^2, with y = x - shift
// (a shift near the data, so that Q - S^2 / W loses no digits to cancellation).
#pragma once

#include "macros.h"

namespace gwk {
namespace kmeans1d {

// Weighted sum of squared errors of points [i, j) about their weighted mean; 0 for a run of zero
// total weight (any centre is then optimal). Never negative (rounding clamped).
GWK_HOST_DEVICE double run_cost(const double* W, const double* S, const double* Q, long i, long j) {
  const double w = W[j] - W[i];
  if (!(w > 0)) return 0.0;
  const double s = S[j] - S[i];
  const double c = (Q[j] - Q[i]) - s * s / w;
  return c > 0 ? c : 0.0;
}

// The centre of run [i, j): its weighted mean (+ shift), or, for a run of zero total weight, the
// midpoint of its sorted values lo and hi.
GWK_HOST_DEVICE double run_centre(const double* W, const double* S, long i, long j, double shift, double lo,
                                  double hi) {
  const double w = W[j] - W[i];
  return w > 0 ? (S[j] - S[i]) / w + shift : (lo + hi) / 2;
}

}  // namespace kmeans1d
}  // namespace gwk
