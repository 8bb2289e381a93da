// reservoir/stats.hpp: a snapshot of a pool's counters (Pool::stats()).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>

namespace reservoir {

// Why the pool closed a connection.
enum class CloseReason : std::uint8_t {
  idle_timeout,       // idle above min for longer than idle_timeout
  lifetime,           // older than max_lifetime
  broken,             // the driver saw the link fail
  validation_failed,  // the ping before hand-out failed
  reset_failed,       // rollback or session reset on release failed
  shrink,             // over max (force_get extras, reconfigure) or evicted for another user
  dropped,            // Lease::drop()
  session_callback,   // the session callback threw
  pool_closed,        // close() or the pool's end
};
inline constexpr std::size_t kCloseReasons = 9;
const char* to_string(CloseReason reason) noexcept;

// A latency distribution, in microseconds.
struct LatencySummary {
  std::uint64_t count = 0;
  std::uint64_t p50_us = 0;
  std::uint64_t p99_us = 0;
  std::uint64_t max_us = 0;
};

// Per connection class (DRCP's V$CPOOL_CC_STATS).
struct ClassStats {
  std::uint64_t requests = 0;  // acquires naming the class
  std::uint64_t hits = 0;      // served a session last used by the class
  std::uint64_t misses = 0;    // served another class's session (reset) or a new one
  std::uint64_t waits = 0;     // had to wait
};

struct PoolStats {
  // Gauges, as of the snapshot.
  std::uint32_t opened = 0;      // live connections (idle + busy), force_get extras included
  std::uint32_t busy = 0;        // leased out
  std::uint32_t idle = 0;        // in the pool, ready
  std::uint32_t connecting = 0;  // connection attempts in flight
  std::uint32_t waiting = 0;     // acquirers waiting now
  std::uint32_t max_waiting = 0; // the most ever waiting at once

  // Counters since creation.
  std::uint64_t acquires = 0;         // acquire() calls
  std::uint64_t hits = 0;             // served an already-open connection
  std::uint64_t misses = 0;           // had to open a connection
  std::uint64_t waits = 0;            // had to wait for a connection
  std::uint64_t timeouts = 0;         // gave up with pool_timeout
  std::uint64_t exhausted = 0;        // refused with pool_exhausted (no_wait)
  std::uint64_t cancelled = 0;        // given up by the caller before they ended (async
                                      // cancellation, a destroyed coroutine)
  std::uint64_t creates = 0;          // connections opened
  std::uint64_t create_failures = 0;  // connection attempts that failed
  std::uint64_t drops = 0;            // connections closed by the pool before pool close
                                      // (broken, rollback failed, over max, Lease::drop())
  std::string last_connect_error;     // empty when no attempt has failed
  std::uint64_t ping_failures = 0;    // pings before hand-out that failed
  std::uint64_t leaks = 0;            // leases reported as held past leak_threshold
  std::array<std::uint64_t, kCloseReasons> closed{};  // connections closed, by CloseReason
  LatencySummary wait_time;           // time acquire() took, over all acquires
  LatencySummary hold_time;           // time from acquire to release, over all leases
  std::map<std::string, ClassStats> classes;  // by connection class ("" = default class)

  std::uint64_t closed_for(CloseReason r) const { return closed[static_cast<std::size_t>(r)]; }

  // One line: "opened=3 busy=1 idle=2 ... hits=10 misses=3 ...".
  std::string to_string() const;
};

}  // namespace reservoir
