// reservoir/clock.hpp: the time source of a pool. Pools read time only through a Clock, so that
// tests drive idle timeouts, lifetimes, ping intervals and leak detection with a fake clock
// instead of sleeping. Waits for a free connection always use real time.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>

namespace reservoir {

class Clock {
 public:
  using time_point = std::chrono::steady_clock::time_point;
  virtual ~Clock() = default;
  // Monotonic time. Thread-safe; called on the acquire path, so it must be cheap.
  virtual time_point now() const noexcept = 0;
};

// The default: a coarse monotonic clock (a few milliseconds of resolution, a few nanoseconds to
// read), enough for timeouts measured in seconds.
std::shared_ptr<Clock> coarse_clock();

// A clock that moves only when told to. Thread-safe.
class ManualClock : public Clock {
 public:
  time_point now() const noexcept override;
  void advance(std::chrono::nanoseconds d) noexcept;

 private:
  std::atomic<std::int64_t> ns_{1'000'000'000};  // starts at 1 s, so that "0" is in the past
};

}  // namespace reservoir
