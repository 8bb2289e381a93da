// src/core/clock.cpp: the coarse clock (a cached steady_clock reading refreshed every
// millisecond by one thread) and the manual clock for tests.
#include "reservoir/clock.hpp"

#include "core/ticker.hpp"

namespace reservoir {

namespace {
class CoarseClock : public Clock {
 public:
  time_point now() const noexcept override { return core::ticker_now(); }
};
}  // namespace

std::shared_ptr<Clock> coarse_clock() {
  static const auto clock = std::make_shared<CoarseClock>();
  core::ticker_start();
  return clock;
}

Clock::time_point ManualClock::now() const noexcept {
  return time_point(std::chrono::nanoseconds(ns_.load(std::memory_order_acquire)));
}

void ManualClock::advance(std::chrono::nanoseconds d) noexcept {
  ns_.fetch_add(d.count(), std::memory_order_acq_rel);
}

}  // namespace reservoir
