#include "parallel.h"

#include <ATen/Parallel.h>
#include <c10/util/ParallelGuard.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <exception>
#include <memory>
#include <mutex>

namespace gwk {
namespace cpu {
namespace {

// Chunks per thread: enough that a thread slowed by another process takes fewer of them, few
// enough that claiming one (an atomic add) stays a negligible part of its work.
constexpr int64_t kChunksPerThread = 8;

// What the caller and its helpers share. Helpers hold it by shared_ptr: one that starts after
// the caller has returned finds no chunk left and touches nothing else (the body lives on the
// caller's stack and is only reached through a claimed chunk, which the caller waits for).
struct Chunks {
  int64_t n = 0, size = 0, count = 0;
  ChunkFn fn = nullptr;
  const void* body = nullptr;
  std::atomic<int64_t> next{0};      // the next chunk to claim
  std::atomic<int64_t> unfinished{0};  // chunks not yet finished
  std::atomic<int> next_helper{1};   // participant indices of the helpers
  std::atomic<bool> failed{false};
  std::exception_ptr error;          // the first exception, under `mutex`
  std::mutex mutex;
  std::condition_variable all_finished;
  bool finished = false;             // under `mutex`

  // Claims and runs chunks until none is left.
  void work(int participant) {
    for (int64_t c = next.fetch_add(1); c < count; c = next.fetch_add(1)) {
      if (!failed.load(std::memory_order_relaxed)) {
        try {
          fn(body, c * size, std::min(n, (c + 1) * size), participant);
        } catch (...) {
          std::lock_guard<std::mutex> lock(mutex);
          if (!error) error = std::current_exception();
          failed.store(true);
        }
      }
      if (unfinished.fetch_sub(1) == 1) {
        std::lock_guard<std::mutex> lock(mutex);
        finished = true;
        all_finished.notify_one();
      }
    }
  }
};

}  // namespace

int chunk_participants() {
  if (at::in_parallel_region() || c10::ParallelGuard::is_enabled()) return 1;
  return std::max(1, at::get_num_threads());
}

void run_chunks(int64_t n, int64_t grain, ChunkFn fn, const void* body) {
  if (n <= 0) return;
  const int threads = chunk_participants();
  const int64_t size = std::max({int64_t{1}, grain, (n + threads * kChunksPerThread - 1) / (threads * kChunksPerThread)});
  const int64_t count = (n + size - 1) / size;
  if (threads == 1 || count == 1) {
    fn(body, 0, n, 0);
    return;
  }
  auto chunks = std::make_shared<Chunks>();
  chunks->n = n;
  chunks->size = size;
  chunks->count = count;
  chunks->fn = fn;
  chunks->body = body;
  chunks->unfinished.store(count);
  const int helpers = static_cast<int>(std::min<int64_t>(threads, count)) - 1;
  for (int h = 0; h < helpers; ++h) {
    at::launch([chunks] {
      // at::launch gives the task the caller's thread-local state (inference mode, dispatch keys).
      if (chunks->next.load() >= chunks->count) return;  // late: the work is done or taken
      c10::ParallelGuard in_region(true);  // a nested parallel_chunks or parallel_for runs inline
      chunks->work(chunks->next_helper.fetch_add(1));
    });
  }
  {
    c10::ParallelGuard in_region(true);
    chunks->work(0);
  }
  if (chunks->unfinished.load() > 0) {
    std::unique_lock<std::mutex> lock(chunks->mutex);
    chunks->all_finished.wait(lock, [&] { return chunks->finished; });
  }
  if (chunks->failed.load()) {
    std::lock_guard<std::mutex> lock(chunks->mutex);
    std::rethrow_exception(chunks->error);
  }
}

}  // namespace cpu
}  // namespace gwk
