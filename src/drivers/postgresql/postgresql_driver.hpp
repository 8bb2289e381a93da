// postgresql_driver.hpp: the PostgreSQL driver (libpq) for the "postgresql" scheme (postgres://
// is folded to it). It registers itself; find_driver("postgresql") finds it.
#pragma once

#include <chrono>
#include <memory>
#include <string_view>

#include "reservoir/driver.hpp"

namespace reservoir::drivers {

// Opens PostgreSQL sessions through libpq. See docs/postgresql.md.
//
//   postgresql://app:secret@db1:5432/shop?sslmode=require&application_name=shop
//   postgresql://app@db1:5432,db2:5432/shop?target_session_attrs=read-write
//   postgresql://?host=/var/run/postgresql&dbname=shop       (libpq keywords as parameters)
//
// The URL's user, password, host(s), port(s) and database become libpq's user, password, host,
// port and dbname. Every ?key=value is passed to libpq as a connection keyword (sslmode,
// application_name, target_session_attrs, options, ...) and wins over the URL part of the same
// name, except the driver's own parameter, which libpq never sees:
//   stmt_cache_size=<n>   prepared statements kept per connection (default 20, 0 disables)
// Unless given, the driver sets client_encoding=UTF8, fallback_application_name=reservoir,
// keepalives=1, keepalives_idle=30, keepalives_interval=10, keepalives_count=3 and
// tcp_user_timeout=10000, so that a dead peer is found in seconds, not hours. libpq's
// environment variables (PGHOST, PGPASSWORD, ...) and ~/.pgpass fill what the DSN leaves out.
//
// Thread safety: connect() may run on several threads at once.
class PostgresDriver final : public Driver {
 public:
  static constexpr std::chrono::milliseconds kDefaultConnectTimeout{10'000};
  static constexpr std::size_t kDefaultStatementCacheSize = 20;

  std::string_view scheme() const noexcept override { return "postgresql"; }

  // Connects with libpq's non-blocking API and gives up at timeout (0: the DSN's
  // connect_timeout, else kDefaultConnectTimeout; with both, the shorter), covering every host
  // of a multi-host DSN together. Host name lookup happens before the clock starts and is
  // bounded by the resolver's own timeout.
  // Errors: invalid_argument (an unknown parameter, a bad stmt_cache_size or connect_timeout),
  // auth_failed (SQLSTATE 28P01 wrong password, 28000 no pg_hba.conf entry or unknown role),
  // connect_failed (3D000 unknown database, 53300 too many connections, 57P03 the server is
  // starting or stopping, none when unreachable or timed out). Messages name the redacted DSN.
  std::unique_ptr<Connection> connect(const Dsn& dsn, std::chrono::milliseconds timeout) override;

  // The same connect as an operation for an event loop (reservoir/nonblocking.hpp): every
  // PQconnectPoll step is one resume(); each wait names PQsocket() afresh (it changes between
  // hosts) and has the time left to the deadline as its timeout. resume(true) after the
  // deadline throws connect_failed as connect() does. The same errors and the same connection
  // (take(): a PostgresConnection) as connect(). Nothing happens before the first resume().
  std::unique_ptr<ConnectOp> start_connect(const Dsn& dsn,
                                           std::chrono::milliseconds timeout) override;
};

// The registered PostgreSQL driver (the same object find_driver("postgresql") returns unless an
// application replaced it). Never null.
std::shared_ptr<Driver> postgresql_driver();

}  // namespace reservoir::drivers
