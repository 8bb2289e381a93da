// reservoir/options.hpp: how a pool is sized and how acquire behaves at the cap.
//
//   reservoir::PoolOptions o;
//   o.dsn = "postgresql://app:secret@db1:5432/shop";
//   o.min = 2; o.max = 10; o.increment = 2;
//   o.get_mode = reservoir::GetMode::timed_wait; o.wait_timeout = 5s;
//
// Pool::create() checks every field and throws Error{invalid_argument} naming the first bad one.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace reservoir {

class Driver;

// What acquire() does when the pool is at max and no connection is idle (python-oracledb's
// POOL_GETMODE_*).
enum class GetMode : std::uint8_t {
  wait,        // block until a connection is free, however long that takes
  no_wait,     // fail at once with pool_exhausted
  force_get,   // open one beyond max; it is closed, not kept, when released while at/over max
  timed_wait,  // block up to wait_timeout, then fail with pool_timeout (the default)
};
const char* to_string(GetMode mode) noexcept;
// Parses "wait", "no_wait", "force_get", "timed_wait" (also "nowait", "forceget", "timedwait").
// Throws Error{invalid_argument}.
GetMode parse_get_mode(std::string_view text);

struct PoolOptions {
  std::string dsn;              // required; see reservoir/dsn.hpp
  std::string name;             // for logs and errors; defaults to the redacted DSN
  std::uint32_t min = 1;        // connections kept open
  std::uint32_t max = 10;       // hard cap (force_get extras aside); at least 1, at least min
  std::uint32_t increment = 1;  // connections opened when the pool grows; at least 1
  GetMode get_mode = GetMode::timed_wait;
  // timed_wait's limit. 30 s by default: long enough to ride out a burst, short enough that a
  // stuck pool surfaces as an error a person sees rather than as a hung request.
  std::chrono::milliseconds wait_timeout{30'000};
  std::chrono::milliseconds connect_timeout{10'000};  // per connection attempt; 0 = driver default
  // When true, create() throws if it cannot open min connections. When false (the default) the
  // pool is created anyway and keeps trying in the background.
  bool fail_fast = false;
  // Overrides the driver chosen by the DSN's scheme (tests use a fake driver).
  std::shared_ptr<Driver> driver;
};

// Per-call settings for Pool::acquire. Unset fields take the pool's values.
struct AcquireOptions {
  std::optional<GetMode> get_mode;
  std::optional<std::chrono::milliseconds> wait_timeout;
};

// The run-time adjustable part of PoolOptions (Pool::reconfigure). Unset fields keep their value.
struct PoolSettings {
  std::optional<std::uint32_t> min;
  std::optional<std::uint32_t> max;
  std::optional<std::uint32_t> increment;
  std::optional<GetMode> get_mode;
  std::optional<std::chrono::milliseconds> wait_timeout;
};

}  // namespace reservoir
