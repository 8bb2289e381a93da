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
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "reservoir/clock.hpp"
#include "reservoir/log.hpp"
#include <string_view>

namespace reservoir {

class Driver;
class Connection;

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

// DRCP's session purity: whether a session may carry state from an earlier use.
enum class Purity : std::uint8_t {
  self,  // prefer a session last used by the same connection class, as that class left it
  new_,  // always a clean session: reset (or newly opened) before it is handed out
};
const char* to_string(Purity purity) noexcept;

// Brings a connection's session to the state `requested_tag` names (e.g. "tz=utc" -> SET TIME
// ZONE). Runs on the acquiring thread for every new connection and whenever the connection
// handed out does not carry the requested tag; after it returns the connection carries that
// tag. If it throws, the connection is closed and acquire() throws what it threw.
using SessionCallback = std::function<void(Connection& connection, std::string_view requested_tag)>;

struct PoolOptions {
  std::string dsn;           // required; see reservoir/dsn.hpp
  std::string name;          // for logs, errors and the registry; defaults to the redacted DSN
  std::uint32_t min = 1;     // connections kept open
  std::uint32_t max = 10;    // hard cap (force_get extras aside); at least 1, at least min
  std::uint32_t increment = 1;  // connections opened when the pool grows; at least 1
  GetMode get_mode = GetMode::timed_wait;
  // timed_wait's limit. 30 s by default: long enough to ride out a burst, short enough that a
  // stuck pool surfaces as an error a person sees rather than as a hung request.
  std::chrono::milliseconds wait_timeout{30'000};
  std::chrono::milliseconds connect_timeout{10'000};  // per connection attempt; 0 = driver default
  // When true, create() throws if it cannot open min connections. When false (the default) the
  // pool is created anyway and keeps trying in the background.
  bool fail_fast = false;

  // --- Health and expiry ---
  // A connection idle longer than this is pinged before it is handed out: 0 = always,
  // negative = never. A connection that fails is closed and the acquirer gets another without
  // losing its place in line.
  std::chrono::milliseconds ping_interval{60'000};
  std::chrono::milliseconds ping_timeout{5'000};
  // Idle connections above min are closed after this long idle; 0 = never.
  std::chrono::milliseconds idle_timeout{600'000};
  // A connection older than this is closed when it is next idle; 0 = never. Each connection's
  // limit is shortened by a random part of up to lifetime_jitter, so that connections opened
  // together are not all replaced together.
  std::chrono::milliseconds max_lifetime{1'800'000};
  std::chrono::milliseconds lifetime_jitter{60'000};
  // How often the background maintenance looks at this pool (idle, lifetime, leaks, min).
  std::chrono::milliseconds maintenance_interval{1'000};
  // false: the pool schedules no maintenance passes on the process's background threads; the
  // application runs them, every maintenance_interval (reservoir::async_maintain does it on an
  // Asio io_context; Pool::run_maintenance() by hand). Opening connections ahead (min,
  // increment) still happens on the background threads.
  bool background_maintenance = true;

  // --- Connection storms ---
  std::uint32_t max_connecting = 2;  // connection attempts in flight at once; at least 1
  // After a failed attempt, the next waits backoff_initial, doubling per failure up to
  // backoff_max, each with up to 25% jitter.
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{10'000};

  // --- Session state ---
  // Full driver session reset when a connection comes back (rollback plus clearing session
  // state). Without it, only an open transaction is rolled back.
  bool reset_on_release = false;
  SessionCallback session_callback;
  // false: a heterogeneous pool; acquire() names the user and password of each connection.
  bool homogeneous = true;

  // --- Observability ---
  // A lease held longer than this is reported once through the log hook with where it was
  // acquired; 0 = off.
  std::chrono::milliseconds leak_threshold{0};
  LogHook log;

  // --- Injection (tests) ---
  std::shared_ptr<Driver> driver;  // overrides the driver chosen by the DSN's scheme
  std::shared_ptr<Clock> clock;    // overrides coarse_clock()
};

// Per-call settings for Pool::acquire. Unset fields take the pool's values.
struct AcquireOptions {
  std::optional<GetMode> get_mode;
  std::optional<std::chrono::milliseconds> wait_timeout;
  // Session tag wanted (see SessionCallback and docs/pool.md, "Tags"). Empty: no tag.
  std::string tag;
  // Accept a connection carrying any tag when none has exactly `tag`.
  bool match_any_tag = false;
  // DRCP connection class and purity. An empty class is the default class.
  std::string cclass;
  Purity purity = Purity::self;
  // Heterogeneous pools only: the database user and password of the connection.
  std::string user;
  std::string password;
};

// The run-time adjustable part of PoolOptions (Pool::reconfigure). Unset fields keep their value.
struct PoolSettings {
  std::optional<std::uint32_t> min;
  std::optional<std::uint32_t> max;
  std::optional<std::uint32_t> increment;
  std::optional<GetMode> get_mode;
  std::optional<std::chrono::milliseconds> wait_timeout;
  std::optional<std::chrono::milliseconds> ping_interval;
  std::optional<std::chrono::milliseconds> idle_timeout;
  // Applies to connections opened from now on; open ones keep the lifetime they were given.
  std::optional<std::chrono::milliseconds> max_lifetime;
};

}  // namespace reservoir
