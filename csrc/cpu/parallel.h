// Parallel loops that stay fast on a busy machine.
//
// at::parallel_for splits its range evenly over an OpenMP team and joins the team at the end: when
// the OS has descheduled one thread (another process wants the core), the caller waits a time
// slice for it at the join, and its share of the work waits with it (bench/bench_busy.py measured
// 5x on a 1.6 ms op). parallel_chunks instead lets the calling thread and helpers from ATen's
// inter-op pool claim chunks one at a time: the caller waits only for chunks a helper has already
// claimed, never for a helper that has not started, so a late helper costs nothing (the caller
// does its chunks) and a slow one takes fewer.
//
// The body must not call ATen ops that open parallel regions or the BLAS: helpers are not OpenMP
// threads (the BLAS would start a team of its own on each).
#pragma once

#include <cstdint>

namespace gwk {
namespace cpu {

// How many threads parallel_chunks may use: at::get_num_threads() (torch.set_num_threads), or 1
// inside a parallel region (ATen's or this one's). A body's participant index is below this.
int chunk_participants();

using ChunkFn = void (*)(const void* body, int64_t begin, int64_t end, int participant);
void run_chunks(int64_t n, int64_t grain, ChunkFn fn, const void* body);

// body(begin, end, participant) for consecutive chunks [begin, end) covering [0, n), each at
// least `grain` long (the last may be shorter), run by up to chunk_participants() threads;
// participant identifies the thread (for per-thread scratch) and is below chunk_participants().
// The caller's thread-local state (inference mode, dispatch keys) holds on every thread. An
// exception in a body is rethrown here after the chunks already claimed have finished.
template <typename Body>
void parallel_chunks(int64_t n, int64_t grain, const Body& body) {
  run_chunks(
      n, grain,
      [](const void* b, int64_t begin, int64_t end, int participant) {
        (*static_cast<const Body*>(b))(begin, end, participant);
      },
      &body);
}

}  // namespace cpu
}  // namespace gwk
