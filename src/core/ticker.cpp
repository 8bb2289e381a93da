// src/core/ticker.cpp: the thread behind ticker_now().
#include "core/ticker.hpp"

#include <mutex>
#include <thread>

namespace reservoir::core {

std::atomic<std::int64_t> g_ticker_ns{
    std::chrono::steady_clock::now().time_since_epoch().count()};

void ticker_start() {
  static std::once_flag once;
  std::call_once(once, [] {
    g_ticker_ns.store(std::chrono::steady_clock::now().time_since_epoch().count());
    // Detached and never stopped: pools may live until the process exits. One wake-up per
    // millisecond costs well under 0.1% of a core.
    std::thread([] {
      for (;;) {
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
        g_ticker_ns.store(std::chrono::steady_clock::now().time_since_epoch().count(),
                          std::memory_order_relaxed);
      }
    }).detach();
  });
}

}  // namespace reservoir::core
