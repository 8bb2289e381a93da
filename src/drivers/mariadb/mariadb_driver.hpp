// mariadb_driver.hpp: the MariaDB / MySQL driver (Connector/C) for the "mariadb" scheme
// (mysql:// is folded to it). It registers itself; find_driver("mariadb") finds it.
#pragma once

#include <chrono>
#include <cstddef>
#include <memory>
#include <string_view>

#include "reservoir/driver.hpp"

namespace reservoir::drivers {

// Opens MariaDB and MySQL sessions through MariaDB Connector/C. See docs/mariadb.md.
//
//   mariadb://app:secret@db1:3306/shop?ssl_mode=required
//   mysql://app:secret@localhost/shop?unix_socket=/run/mysqld/mysqld.sock
//
// The URL's user, password, host, port (default 3306) and database are the session's. Parameters
// (any other is invalid_argument, named):
//   charset=<name>            the connection character set (default utf8mb4)
//   connect_timeout=<s>       seconds; with the caller's timeout, the shorter wins
//   read_timeout=<s>          per-read limit on every later call (default: none)
//   write_timeout=<s>         per-write limit on every later call (default: none)
//   unix_socket=<path>        connect through this socket instead of TCP
//   ssl_mode=disabled|preferred|required|verify_ca|verify_identity  (default: Connector/C's)
//   ssl_ca, ssl_capath, ssl_cert, ssl_key, ssl_cipher=<...>   TLS material
//   stmt_cache_size=<n>       prepared statements kept per connection (default 20, 0 disables)
//
// Thread safety: connect() may run on several threads at once (mysql_library_init runs once,
// before the first).
class MariaDbDriver final : public Driver {
 public:
  static constexpr std::chrono::milliseconds kDefaultConnectTimeout{10'000};
  static constexpr std::size_t kDefaultStatementCacheSize = 20;

  std::string_view scheme() const noexcept override { return "mariadb"; }

  // Connects, giving up after timeout (0: the DSN's connect_timeout, else
  // kDefaultConnectTimeout). Connector/C counts whole seconds, so the limit is rounded up to
  // the next second; it covers the TCP connect and the wait for the server's greeting.
  // Errors: invalid_argument (an unknown or malformed parameter), auth_failed (1045 / 1698
  // SQLSTATE 28000 wrong credentials, 1044 no access to the database), connect_failed (1049
  // unknown database, reported with SQLSTATE 3D000 so that it is not retried; 1040 too many
  // connections; 2002 / 2003 unreachable; 2013 no greeting in time). Messages carry the
  // server's text and the redacted DSN, never the password.
  std::unique_ptr<Connection> connect(const Dsn& dsn, std::chrono::milliseconds timeout) override;

  // connect() over Connector/C's non-blocking API (mysql_real_connect_start / _cont): the same
  // options, limit, post-connect checks and errors, from the op's resume(). The limit is kept
  // exactly (in ms) as the op's deadline besides Connector/C's whole seconds; when it passes,
  // resume() throws connect_failed ("no answer within the connect timeout", native code 2013).
  // DSN errors (invalid_argument) are thrown here. take() returns a MariaDbConnection.
  std::unique_ptr<ConnectOp> start_connect(const Dsn& dsn,
                                           std::chrono::milliseconds timeout) override;
};

// The registered MariaDB driver. Never null.
std::shared_ptr<Driver> mariadb_driver();

}  // namespace reservoir::drivers
