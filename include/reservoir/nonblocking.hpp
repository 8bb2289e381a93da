// reservoir/nonblocking.hpp: the non-blocking side of the driver interface, which the async API
// (reservoir/async.hpp) drives on an event loop.
//
// A driver that can talk to its database without blocking a thread returns an operation object:
// resume() advances it as far as it can go without blocking and says what it waits for next (a
// socket readable or writable, perhaps with a timeout); the event loop waits for exactly that
// and calls resume() again, until resume() says done. Drivers stay free of any event-loop type:
// the same operation can be driven by Asio, by poll(2) in a test, or by anything else.
//
//   auto op = conn.start_statement("SELECT 1", {}, true);   // nullptr: no non-blocking path
//   for (IoWait w = op->resume(false); w.kind != IoWait::Kind::done;)
//     w = op->resume(!wait_for(w));                        // wait_for: false on timeout
//   ResultSet rows = op->take_rows();
//
// A driver without a non-blocking path returns nullptr from start_connect / start_statement; the
// async API then runs the blocking call on its bounded worker pool (SQLite and ODBC do this).
//
// Thread safety: an operation is driven by one thread at a time, and while it runs its
// connection is used by nobody else.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>

#include "reservoir/value.hpp"

namespace reservoir {

class Connection;

// What a non-blocking operation waits for.
struct IoWait {
  enum class Kind : std::uint8_t {
    done,        // finished: read the result
    read,        // fd readable
    write,       // fd writable
    read_write,  // either
    timer,       // only the timeout (fd unused)
  };
  Kind kind = Kind::done;
  int fd = -1;
  // Call resume(true) after this long if the fd is not ready by then. 0: no timeout of the
  // driver's own (the caller's deadline still applies: it calls abandon()).
  std::chrono::milliseconds timeout{0};
};

class NonBlockingOp {
 public:
  virtual ~NonBlockingOp() = default;
  NonBlockingOp(const NonBlockingOp&) = delete;
  NonBlockingOp& operator=(const NonBlockingOp&) = delete;

  // Starts (first call, timed_out = false) or advances the operation. timed_out: the previous
  // wait ended by its timeout, not by the fd. Returns what to wait for next, or Kind::done.
  // Throws reservoir::Error on failure, as the blocking call would (the operation is then over).
  // Once done or thrown, resume() must not be called again.
  virtual IoWait resume(bool timed_out) = 0;

  // The caller gives up before done (cancellation, its deadline). Leaves the connection either
  // usable or broken() so that the pool discards it; never blocks for long. Harmless after done.
  virtual void abandon() noexcept = 0;

 protected:
  NonBlockingOp() = default;
};

// Opening a session. After done, take() hands over the connection (once).
class ConnectOp : public NonBlockingOp {
 public:
  virtual std::unique_ptr<Connection> take() = 0;
};

// One statement (execute or query). The operation keeps its own copy of the SQL and the
// parameters. After done: affected() (as execute_params returns) and, when rows were asked for,
// take_rows() (as query_params returns).
class StatementOp : public NonBlockingOp {
 public:
  virtual std::uint64_t affected() const noexcept = 0;
  virtual ResultSet take_rows() = 0;
};

}  // namespace reservoir
