// reservoir/pool.hpp: a thread-safe pool of database connections.
//
//   reservoir::PoolOptions o;
//   o.dsn = "sqlite:///tmp/app.db"; o.min = 2; o.max = 5;
//   auto pool = reservoir::Pool::create(o);
//   {
//     auto c = pool->acquire();
//     auto rows = c->query("SELECT 1");
//   }
//   std::cout << pool->stats().to_string() << "\n";
//   pool->close();
//
// Thread safety: every member function may be called from any thread at any time.
// Waiting: acquirers that must wait are served first come, first served. A newcomer may take a
// just-released connection ahead of them only while the oldest waiter is younger than its
// starvation bound (four times the wait strict first-come-first-served would give it, between
// 1 and 10 ms); after that, released connections are handed straight to the oldest waiter (the
// rule of Go's sync.Mutex, with a bound that grows with the queue), so nobody starves and a busy
// pool does not degrade into one context switch per acquire. docs/pool.md, "Waiting".
#pragma once

#include <cstdint>
#include <memory>
#include <source_location>
#include <string>

#include "reservoir/lease.hpp"
#include "reservoir/options.hpp"
#include "reservoir/stats.hpp"

namespace reservoir {

namespace core {
class Engine;
}

class Pool {
 public:
  // Checks options (Error{invalid_argument} names the bad field), opens min connections and
  // returns the pool. If they cannot be opened the pool still exists and keeps trying in the
  // background, unless options.fail_fast is set: then the connect error is thrown.
  static std::shared_ptr<Pool> create(const PoolOptions& options);

  // Destroying the last handle closes idle connections; leases still out keep working and
  // their connections are closed when they end.
  ~Pool();
  Pool(const Pool&) = delete;
  Pool& operator=(const Pool&) = delete;

  // Borrows a connection. With an idle one available this takes no lock shared by all threads
  // and allocates nothing. When none is idle and fewer than max are open, the pool grows by
  // increment: the caller waits only for the one connection it gets, the rest open in the
  // background. At max, the get mode decides (see GetMode).
  // Errors: pool_exhausted (no_wait), pool_timeout (timed_wait; with live counters and the last
  // connect error), pool_closed, and the driver's connect error when this call opened a
  // connection and the database refused it for good (auth_failed, an unknown database: errors
  // that are not retryable). Retryable connect failures (the database is unreachable) are
  // retried with backoff until the deadline, which then fails with pool_timeout carrying the
  // last connect error; an acquire fails at once when the backoff leaves no attempt before its
  // deadline and no connection is open that could be released to it.
  // `where` is recorded for leak reports; leave it defaulted.
  Lease acquire(const AcquireOptions& options,
                std::source_location where = std::source_location::current());
  // acquire() with the pool's defaults.
  Lease acquire(std::source_location where = std::source_location::current());

  // The asynchronous acquire, an asio::awaitable<Lease>: declared here, defined in
  // reservoir/async.hpp (include it to call this). Same semantics, errors and queue as
  // acquire(): sync and async acquirers wait in one first-come-first-served line.
  //   reservoir::AcquireOptions o{.cclass = "REPORTING"};
  //   reservoir::Lease c = co_await pool->async_acquire(o);
  // GCC 12 (Debian 12's compiler) miscompiles an aggregate built inside a co_await expression
  // (`co_await pool->async_acquire({.cclass = "X"})` frees memory twice): build the options in
  // a statement of their own, as above.
  auto async_acquire(std::source_location where = std::source_location::current());
  auto async_acquire(const AcquireOptions& options,
                     std::source_location where = std::source_location::current());

  std::uint32_t opened() const noexcept;
  std::uint32_t busy() const noexcept;
  std::uint32_t idle() const noexcept;
  std::uint32_t waiting() const noexcept;
  PoolStats stats() const;

  // The stats in Prometheus text exposition format, labelled pool="<name>".
  std::string to_prometheus() const;

  // Runs one maintenance pass now: closes connections idle past idle_timeout (above min) or past
  // max_lifetime, reports leaked leases, and opens connections up to min. It runs by itself
  // every maintenance_interval on the process's background threads; tests with a ManualClock
  // call it directly.
  void run_maintenance();

  // Changes sizing, get mode, wait timeout, ping interval, idle timeout and max lifetime at run
  // time. Raising min or max opens connections in the background and wakes waiters; lowering max
  // closes idle excess now and busy excess when it is released. Throws invalid_argument (the pool
  // is unchanged).
  void reconfigure(const PoolSettings& settings);

  // The options the pool was created with, with reconfigure()d values applied.
  PoolOptions options() const;
  const std::string& name() const noexcept;

  // Closes the pool. Without force: throws pool_busy while leases are out (the pool stays
  // open). With force: closes idle connections now, revokes outstanding leases (using one
  // throws pool_closed; their connections are closed when they end) and fails waiters with
  // pool_closed. After close, acquire() throws pool_closed. Closing twice is harmless.
  void close(bool force = false);
  bool closed() const noexcept;

 private:
  friend struct PoolAccess;  // the async front end (src/async) reaches the engine through it
  explicit Pool(std::shared_ptr<core::Engine> engine) noexcept;
  std::shared_ptr<core::Engine> engine_;
};

}  // namespace reservoir
