// reservoir/registry.hpp: pools found by name, and pools shared per database instance with
// reference counts and a linger time.
//
//   // Named pools (python-oracledb's pool_alias): create once, find anywhere.
//   reservoir::PoolOptions o;
//   o.dsn = "postgresql://app:secret@db1:5432/shop";
//   o.name = "shop";
//   auto pool = reservoir::Pool::create(o);           // registered as "shop"
//   ...
//   auto same = reservoir::get_pool("shop");           // anywhere in the process
//   same->close();                                     // leaves the registry
//
//   // Shared pools (an ODBC driver manager's per-instance pooling): one pool per database
//   // instance, kept while handles exist and for linger_time after the last one goes.
//   reservoir::SharedPool a = reservoir::shared_pool(o);  // creates the pool
//   reservoir::SharedPool b = reservoir::shared_pool(o);  // the same pool
//   auto c = a->acquire();
//
// Thread safety: every function here may be called from any thread at any time. The registry
// holds one process-wide lock, and never calls user code (log hooks, drivers, pool close) while
// holding it.
// Errors: Error{invalid_argument} for an unknown or taken name, bad options or limits;
// Error{pool_exhausted} when max_pools shared pools are all in use. See docs/pool.md, "Registry".
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "reservoir/options.hpp"
#include "reservoir/pool.hpp"

namespace reservoir {

namespace core {
struct SharedPoolRef;
}

// --- Named pools --------------------------------------------------------------------------------
//
// Pool::create() registers a pool whose options.name is set; the registry then holds a strong
// reference until the pool is closed (Pool::close() removes it). A second pool with a name in
// use is refused by Pool::create() with Error{invalid_argument} "pool name 'x' is already in use"
// (nothing of it stays open).

// The open pool registered as name. Throws Error{invalid_argument}
// "no pool named 'x' (named pools: a, b)" when there is none.
std::shared_ptr<Pool> get_pool(std::string_view name);

// The names of the registered pools, sorted.
std::vector<std::string> pool_names();

// --- Shared pools --------------------------------------------------------------------------------

struct SharedPoolLimits {
  // How long a shared pool stays open after its last handle goes. A shared_pool() call for its
  // instance in that time gets it back with its connections still open.
  std::chrono::milliseconds linger_time{300'000};
  // Shared pools that may exist at once (lingering ones included: to make room, the one that has
  // lingered longest is closed).
  std::uint32_t max_pools = 100;
  // The largest options.max a shared pool may have.
  std::uint32_t max_connections_per_pool = 500;
};

// Replaces the limits. A new linger_time applies at once, to pools already lingering too (counted
// from when their last handle went): those past it are closed by this call. Lowering max_pools
// closes nothing by itself (lingering pools are closed as room is needed).
// Throws Error{invalid_argument} naming the field: linger_time must not be negative, max_pools
// and max_connections_per_pool must be at least 1.
void set_shared_pool_limits(const SharedPoolLimits& limits);
SharedPoolLimits shared_pool_limits();

// A reference-counted handle on a shared pool. Copying it adds a reference; the pool starts to
// linger when the last handle (copy) is destroyed or reset(). Moved-from and default-constructed
// handles are empty. A handle's own methods are not synchronised (like std::shared_ptr: copy one
// handle per thread); the pool it refers to is fully thread-safe.
class SharedPool {
 public:
  SharedPool() noexcept = default;

  // The pool. Throws Error{invalid_argument} on an empty handle.
  Pool& operator*() const;
  Pool* operator->() const;

  // The pool as a shared_ptr, for APIs that take one; null on an empty handle. It keeps the Pool
  // object alive but is not a handle: the pool still lingers and closes when the last
  // SharedPool goes.
  std::shared_ptr<Pool> pool() const noexcept { return pool_; }

  explicit operator bool() const noexcept { return pool_ != nullptr; }

  // Drops this reference (the handle becomes empty). Never throws.
  void reset() noexcept;

 private:
  friend SharedPool shared_pool(const PoolOptions& options);
  SharedPool(std::shared_ptr<Pool> pool, std::shared_ptr<core::SharedPoolRef> ref) noexcept;

  std::shared_ptr<Pool> pool_;
  std::shared_ptr<core::SharedPoolRef> ref_;  // declared last: released first
};

// A handle on the one shared pool for options' database instance, creating the pool if there is
// none. The instance is (scheme, host, port, database, user) of Dsn::parse(options.dsn), with the
// default port filled in for postgresql (5432) and mariadb (3306); for sqlite the database path
// made absolute; for odbc the connection string's attributes without the password (names
// upper-cased, sorted). The first caller's options create the pool and fix its settings. A later
// caller whose min, max, increment, get_mode, wait_timeout, connect_timeout, ping_interval,
// idle_timeout, max_lifetime, reset_on_release, homogeneous, password or DSN parameters differ
// gets the existing pool and a LogLevel::warning through its own options.log naming the fields
// (values of non-secret ones; never a password). Other options (log, session_callback,
// driver, ...) are the first caller's.
//
// When the last handle goes, the pool lingers for linger_time, then is closed: close(false), or,
// if leases taken through the pool are still out, a warning through the pool's log hook and
// close(true) (those leases are revoked; see docs/pool.md, "Registry"). A shared_pool() call
// during the linger revives the pool. A shared pool closed by hand leaves the registry; the next
// call creates a new one.
//
// Concurrent first calls for one instance create one pool: the others wait for that create()
// (bounded by its connect timeouts) and share the result; if it fails, each tries on its own.
//
// Errors: Error{invalid_argument} for bad options (as Pool::create) or options.max above
// max_connections_per_pool (naming max); Error{pool_exhausted} when max_pools shared pools exist
// and none is lingering; whatever Pool::create() throws (e.g. fail_fast connect errors).
SharedPool shared_pool(const PoolOptions& options);

// Shared pools in the registry now (lingering ones and ones being created included).
std::size_t shared_pool_count();

}  // namespace reservoir
