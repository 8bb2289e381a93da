// src/core/background.hpp: the one set of background threads shared by every pool in the
// process (connection opening, retries). Pools post work here instead of owning threads.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <functional>
#include <mutex>
#include <queue>
#include <thread>
#include <vector>

namespace reservoir::core {

class Background {
 public:
  using Task = std::function<void()>;
  using TimePoint = std::chrono::steady_clock::time_point;

  // The process-wide instance. Its threads start on first use and live until the process ends.
  static Background& instance();

  // Runs task on a background thread as soon as one is free. Tasks must not throw (an escaping
  // exception is swallowed) and must hold only weak references to their pool.
  void post(Task task);

  // Runs task at or after `at`.
  void post_at(TimePoint at, Task task);

  // Tasks posted and not yet finished (for tests and diagnostics).
  std::size_t pending() const;

 private:
  Background();
  void run();
  void stop_at_exit() noexcept;

  struct Timed {
    TimePoint at;
    std::uint64_t seq;
    Task task;
    bool operator>(const Timed& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };

  mutable std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<Task> ready_;                                                // guarded by mutex_
  std::priority_queue<Timed, std::vector<Timed>, std::greater<>> timed_;  // guarded by mutex_
  std::uint64_t seq_ = 0;                                                 // guarded by mutex_
  std::size_t running_ = 0;                                               // guarded by mutex_
  bool stopping_ = false;                                                 // guarded by mutex_
  std::condition_variable idle_cv_;  // running_ reached 0
  std::vector<std::thread> threads_;
};

}  // namespace reservoir::core
