// sqlite_driver.hpp: the SQLite driver for the "sqlite" scheme (sqlite:///abs/path.db,
// sqlite://rel/path.db, sqlite::memory:). It registers itself; find_driver("sqlite") finds it.
#pragma once

#include <chrono>
#include <memory>
#include <string_view>

#include "reservoir/driver.hpp"

namespace reservoir::drivers {

// Opens SQLite sessions. DSN parameters:
//   busy_timeout=<ms>   how long a statement waits for another connection's lock (default 5000)
//   journal_mode=<mode> for file databases: wal (default), delete, truncate, persist, memory, off
//
// Each connection to :memory: is its own private, empty database: pooled connections do not
// share data. Use a file (or a file: URI with mode=memory&cache=shared) to share one.
//
// Thread safety: connect() may run on several threads at once; each Connection is opened without
// SQLite's own mutex (SQLITE_OPEN_NOMUTEX) because the pool lends it to one thread at a time.
class SqliteDriver final : public Driver {
 public:
  std::string_view scheme() const noexcept override { return "sqlite"; }

  // Opens dsn.database read-write, creating the file if needed. The timeout bounds the waits
  // for locks while the session is set up (a zero timeout means busy_timeout). Errors:
  // invalid_argument (no path, bad busy_timeout or journal_mode), connect_failed (native_code is
  // the SQLite result code, e.g. 14 SQLITE_CANTOPEN, 26 SQLITE_NOTADB).
  std::unique_ptr<Connection> connect(const Dsn& dsn, std::chrono::milliseconds timeout) override;
};

// The registered SQLite driver (the same object find_driver("sqlite") returns unless an
// application replaced it). Never null.
std::shared_ptr<Driver> sqlite_driver();

}  // namespace reservoir::drivers
