// reservoir/stats.hpp: a snapshot of a pool's counters (Pool::stats()).
#pragma once

#include <cstdint>
#include <string>

namespace reservoir {

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
  std::uint64_t creates = 0;          // connections opened
  std::uint64_t create_failures = 0;  // connection attempts that failed
  std::uint64_t drops = 0;            // connections closed by the pool before pool close
                                      // (broken, rollback failed, over max, Lease::drop())
  std::string last_connect_error;     // empty when no attempt has failed

  // One line: "opened=3 busy=1 idle=2 ... hits=10 misses=3 ...".
  std::string to_string() const;
};

}  // namespace reservoir
