// src/server/backend.hpp: raw PostgreSQL server connections for reservoird, as a reservoir Driver
// and Connection, so that the pool engine sizes, waits for, checks, expires and counts them.
//
//   auto target = std::make_shared<BackendTarget>(...);     // host, dbname, user, password, ...
//   PoolOptions o; o.dsn = "reservoird://server"; o.driver =
//   std::make_shared<BackendDriver>(target); Lease lease = co_await pool->async_acquire(options);
//   auto* server = BackendConnection::from(*lease);          // fd, parameters, backend key
//
// The session relays protocol bytes over fd() itself (through Asio); the Connection interface
// (ping, reset, rollback, execute without parameters) runs blocking simple-protocol round trips
// with deadlines, on whichever thread the engine calls it (the async worker pool, or the thread
// that ends a lease).
//
// Thread safety: BackendDriver::connect and set_target may be called from any thread. A
// BackendConnection is used by one thread at a time (its lease holder or the engine).
#pragma once

#include <asio/any_io_executor.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "reservoir/connection.hpp"
#include "reservoir/driver.hpp"
#include "server/pg_codec.hpp"

namespace reservoir::server {

// Where and how a pool's server connections log in. Immutable once shared.
struct BackendTarget {
  std::string host = "127.0.0.1";
  std::uint16_t port = 5432;
  std::string dbname;
  std::string user;
  std::string password;  // plain, or an md5 hash ("md5..."): used for md5 and cleartext only
  // Startup parameters besides user and database (application_name, client_encoding, options,
  // ...), from the pool's first client.
  std::vector<std::pair<std::string, std::string>> startup_params;
  std::string check_query = "select 1";  // ping
  std::string reset_query = "DISCARD ALL";
  std::size_t max_message = pg::kDefaultMaxMessage;
};

// max_db_connections: the server connections open to one [databases] entry, over all its
// (database, user) pools. BackendDriver::connect takes a place (or fails while `cap` are open);
// the connection gives it back when it closes. cap 0: no limit (the count is still kept).
struct DbLimit {
  std::atomic<std::uint32_t> cap{0};
  std::atomic<std::uint32_t> opened{0};
  // Takes a place: false when cap are open.
  bool try_take() noexcept {
    std::uint32_t n = opened.load(std::memory_order_relaxed);
    while (true) {
      const std::uint32_t c = cap.load(std::memory_order_relaxed);
      if (c > 0 && n >= c) return false;
      if (opened.compare_exchange_weak(n, n + 1, std::memory_order_acq_rel)) return true;
    }
  }
  void give_back() noexcept { opened.fetch_sub(1, std::memory_order_acq_rel); }
  bool full() const noexcept {
    const std::uint32_t c = cap.load(std::memory_order_relaxed);
    return c > 0 && opened.load(std::memory_order_acquire) >= c;
  }
};

class BackendConnection final : public Connection {
 public:
  // Opens the socket, logs in, reads ParameterStatus, BackendKeyData and ReadyForQuery, all
  // within timeout. Errors: connect_failed (unreachable, refused, an unknown database: the
  // SQLSTATE is carried), auth_failed (28xxx, or an authentication method we cannot answer).
  static std::unique_ptr<BackendConnection> open(const BackendTarget& target,
                                                 std::chrono::milliseconds timeout);
  ~BackendConnection() override;

  // The BackendConnection behind a lease's Connection (its native_handle()).
  static BackendConnection* from(Connection& c) noexcept {
    return static_cast<BackendConnection*>(c.native_handle());
  }

  // --- for the relaying session ---
  int fd() const noexcept { return fd_; }
  // The socket as a descriptor of ex's event loop. It stays registered there for the
  // connection's life (registering per borrow cost an EPOLL_CTL_ADD, a DEL and an ioctl per
  // transaction); a session on another event loop moves it (one DEL, one ADD). The descriptor
  // never closes the fd (the destructor does); do not keep the reference past the lease.
  // ex's io_context must outlive the connection or the next socket_on() call (the daemon closes
  // its pools before it destroys its event loops).
  asio::posix::stream_descriptor& socket_on(const asio::any_io_executor& ex);
  const std::map<std::string, std::string>& parameters() const noexcept { return params_; }
  void set_parameter(std::string name, std::string value) {
    params_[std::move(name)] = std::move(value);
  }
  pg::BackendKey key() const noexcept { return key_; }
  const BackendTarget& target() const noexcept { return *target_; }
  // The transaction status of the last ReadyForQuery the session relayed ('I', 'T', 'E').
  void set_status(char status) noexcept { status_ = status; }
  char status() const noexcept { return status_; }
  void mark_broken() noexcept { broken_ = true; }
  // The place this connection holds in its database's max_db_connections count (given back by
  // the destructor).
  void hold_place(std::shared_ptr<DbLimit> limit) noexcept { limit_ = std::move(limit); }

  // --- Connection ---
  std::uint64_t execute_params(std::string_view sql, std::span<const Value> params) override;
  // Runs sql through the simple protocol; rows are not decoded (the result has the affected
  // count only). Parameters: unsupported.
  ResultSet query_params(std::string_view sql, std::span<const Value> params) override;
  void begin() override { simple("BEGIN", {}); }
  void commit() override { simple("COMMIT", {}); }
  void rollback() override { simple("ROLLBACK", {}); }
  bool in_transaction() const noexcept override { return status_ != 'I'; }
  bool broken() const noexcept override { return broken_; }
  void ping(std::chrono::milliseconds timeout) override;
  // ROLLBACK when in a transaction, then the target's reset_query (DISCARD ALL by default).
  void reset() override;
  void* native_handle() noexcept override { return this; }
  std::string_view driver_name() const noexcept override { return "reservoird"; }

 private:
  explicit BackendConnection(std::shared_ptr<const BackendTarget> target)
      : target_(std::move(target)) {}
  using Deadline = std::chrono::steady_clock::time_point;
  void login(Deadline deadline);
  // One simple-protocol round trip; returns the last CommandComplete's row count. Throws
  // query_failed with the SQLSTATE, connection_lost (then broken()).
  std::uint64_t simple(std::string_view sql, std::chrono::milliseconds timeout);
  void send_all(const std::string& bytes, Deadline deadline);
  // The next whole message (read into in_); throws connection_lost on EOF, error or deadline.
  pg::Message next_message(Deadline deadline);
  [[noreturn]] void lost(const std::string& what);

  std::shared_ptr<const BackendTarget> target_;
  int fd_ = -1;
  std::map<std::string, std::string> params_;
  pg::BackendKey key_;
  char status_ = 'I';
  bool broken_ = false;
  std::string in_;  // bytes read but not yet consumed (blocking calls only)
  std::size_t in_at_ = 0;
  std::shared_ptr<DbLimit> limit_;
  std::optional<asio::posix::stream_descriptor> socket_;  // see socket_on()
  const void* socket_home_ = nullptr;  // the execution context socket_ is registered with
};

// The Driver for one pool's server connections. The DSN is ignored: connections go to the
// current target.
class BackendDriver final : public Driver {
 public:
  // limit: the database's max_db_connections count, shared by its pools (may be null).
  explicit BackendDriver(std::shared_ptr<const BackendTarget> target,
                         std::shared_ptr<DbLimit> limit = nullptr)
      : target_(std::move(target)), limit_(std::move(limit)) {}
  std::string_view scheme() const noexcept override { return "reservoird"; }
  std::unique_ptr<Connection> connect(const Dsn& dsn, std::chrono::milliseconds timeout) override;
  // Throws Error{connect_failed} "max_db_connections" at once while the database's cap is
  // reached (retryable: the engine keeps the acquirer waiting and tries again).
  // New connections use target from now on (reload); open ones keep theirs.
  void set_target(std::shared_ptr<const BackendTarget> target);
  std::shared_ptr<const BackendTarget> target() const;

 private:
  mutable std::mutex mutex_;
  std::shared_ptr<const BackendTarget> target_;  // guarded by mutex_
  std::shared_ptr<DbLimit> limit_;
};

// Sends a CancelRequest for key to host:port over a new connection (blocking, bounded by
// timeout). Errors are swallowed: a cancel is best effort, as in libpq.
void send_cancel(const std::string& host, std::uint16_t port, pg::BackendKey key,
                 std::chrono::milliseconds timeout);

// A TCP connection to host:port within the deadline: non-blocking, TCP_NODELAY, SO_KEEPALIVE.
// Returns the fd or throws Error{connect_failed}.
int connect_tcp(const std::string& host, std::uint16_t port,
                std::chrono::steady_clock::time_point deadline);

}  // namespace reservoir::server
