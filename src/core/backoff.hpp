// src/core/backoff.hpp: when the next connection attempt may start after failures: exponential
// backoff with jitter, so that a pool does not hammer a database that is down, and many pools do
// not retry in lockstep. Not thread-safe by itself: the engine guards it with its mutex.
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <random>

namespace reservoir::core {

class Backoff {
 public:
  using time_point = std::chrono::steady_clock::time_point;

  Backoff(std::chrono::milliseconds initial, std::chrono::milliseconds max)
      : initial_(std::max(initial, std::chrono::milliseconds(1))), max_(std::max(max, initial_)) {}

  // An attempt failed at `now`: the next may start after initial * 2^(failures-1), capped at
  // max, plus up to 25% jitter.
  void failed(time_point now) {
    ++failures_;
    auto delay = initial_;
    for (std::uint32_t i = 1; i < failures_ && delay < max_; ++i) delay *= 2;
    delay = std::min(delay, max_);
    const auto jitter = std::uniform_int_distribution<std::int64_t>(0, delay.count() / 4)(rng_);
    next_ = now + delay + std::chrono::milliseconds(jitter);
  }

  void succeeded() noexcept {
    failures_ = 0;
    next_ = time_point::min();
  }

  bool allows(time_point now) const noexcept { return now >= next_; }
  time_point next_attempt() const noexcept { return next_; }
  std::uint32_t failures() const noexcept { return failures_; }

 private:
  std::chrono::milliseconds initial_, max_;
  std::uint32_t failures_ = 0;
  time_point next_ = time_point::min();
  std::minstd_rand rng_{std::random_device{}()};
};

}  // namespace reservoir::core
