// src/core/ticker.hpp: a process-wide cached monotonic time, refreshed every millisecond by one
// thread, so that the acquire/release path reads the time with one load instead of a clock call
// (pools need time only to the millisecond: ping intervals, idle and lifetime limits, hold times).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace reservoir::core {

extern std::atomic<std::int64_t> g_ticker_ns;

// Starts the ticker thread once (idempotent, thread-safe).
void ticker_start();

inline std::chrono::steady_clock::time_point ticker_now() noexcept {
  return std::chrono::steady_clock::time_point(
      std::chrono::nanoseconds(g_ticker_ns.load(std::memory_order_relaxed)));
}

}  // namespace reservoir::core
