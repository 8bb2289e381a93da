// sqlite_driver.cpp: opens and configures SQLite handles, and registers the driver for the
// "sqlite" scheme before main() runs.
#include "drivers/sqlite/sqlite_driver.hpp"

#include <sqlite3.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <charconv>
#include <limits>
#include <string>

#include "drivers/sqlite/sqlite_connection.hpp"
#include "reservoir/error.hpp"

namespace reservoir::drivers {
namespace {

constexpr int kDefaultBusyTimeoutMs = 5000;
constexpr std::string_view kDefaultJournalMode = "wal";
// Spliced into a PRAGMA (which takes no bound parameters), so only these words are let through.
constexpr std::array<std::string_view, 6> kJournalModes = {"delete", "truncate", "persist",
                                                           "memory", "wal",      "off"};

int parse_busy_timeout(const Dsn& dsn) {
  const std::string text = dsn.param("busy_timeout");
  if (text.empty()) return kDefaultBusyTimeoutMs;
  int ms = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), ms);
  if (ec != std::errc() || end != text.data() + text.size() || ms < 0) {
    throw Error(ErrorCode::invalid_argument,
                "sqlite: busy_timeout must be a number of milliseconds, got \"" + text + "\" in " +
                    dsn.redacted());
  }
  return ms;
}

std::string parse_journal_mode(const Dsn& dsn) {
  std::string mode = dsn.param("journal_mode", std::string(kDefaultJournalMode));
  std::transform(mode.begin(), mode.end(), mode.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  if (std::find(kJournalModes.begin(), kJournalModes.end(), mode) == kJournalModes.end()) {
    throw Error(ErrorCode::invalid_argument,
                "sqlite: journal_mode must be one of delete, truncate, persist, memory, wal, off; "
                "got \"" +
                    mode + "\" in " + dsn.redacted());
  }
  return mode;
}

[[noreturn]] void throw_connect_failed(const Dsn& dsn, int code, std::string_view reason) {
  throw Error(ErrorCode::connect_failed,
              "sqlite: cannot open " + dsn.redacted() + ": " + std::string(reason) + " (code " +
                  std::to_string(code) + ")",
              {.native_code = code});
}

}  // namespace

std::unique_ptr<Connection> SqliteDriver::connect(const Dsn& dsn,
                                                  std::chrono::milliseconds timeout) {
  if (dsn.database.empty()) {
    // SQLite would open a private temporary file for an empty name: never what a DSN meant.
    throw Error(ErrorCode::invalid_argument,
                "sqlite: no database in " + dsn.redacted() +
                    " (use sqlite:///abs/path.db, sqlite://rel/path.db or sqlite::memory:)");
  }
  if (sqlite3_threadsafe() == 0) {
    throw Error(ErrorCode::unsupported,
                "sqlite: the linked libsqlite3 was built without thread support "
                "(SQLITE_THREADSAFE=0); a pool moves connections between threads");
  }
  const int busy_timeout_ms = parse_busy_timeout(dsn);
  const std::string journal_mode = parse_journal_mode(dsn);

  // NOMUTEX: the pool hands a connection to one thread at a time, so SQLite's per-connection
  // mutex would only cost. URI: lets a DSN use file: URIs (mode=ro, cache=shared, ...).
  // Each connection to ":memory:" gets its own private database; see sqlite_driver.hpp.
  constexpr int kFlags =
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX | SQLITE_OPEN_URI;
  sqlite3* db = nullptr;
  const int rc = sqlite3_open_v2(dsn.database.c_str(), &db, kFlags, nullptr);
  if (rc != SQLITE_OK) {
    const std::string reason = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close_v2(db);  // open may allocate a handle even when it fails
    throw_connect_failed(dsn, rc, reason);
  }
  sqlite3_extended_result_codes(db, 1);
  auto conn = std::make_unique<SqliteConnection>(db, busy_timeout_ms);  // closes db from here on

  // Setting up may wait for another connection's lock; the connect timeout bounds that wait.
  const auto setup_wait = timeout.count() > 0
                              ? std::min<std::chrono::milliseconds::rep>(
                                    timeout.count(), std::numeric_limits<int>::max())
                              : busy_timeout_ms;
  sqlite3_busy_timeout(db, static_cast<int>(setup_wait));

  // An empty file name means an in-memory (or temporary) database: no journal to configure.
  const char* file = sqlite3_db_filename(db, "main");
  if (file != nullptr && file[0] != '\0') {
    // WAL lets readers and one writer proceed together, which is what pooled connections to
    // one file do. This also reads the file, so "not a database" is reported here, not later.
    const std::string pragma = "PRAGMA journal_mode=" + journal_mode;
    char* error = nullptr;
    if (sqlite3_exec(db, pragma.c_str(), nullptr, nullptr, &error) != SQLITE_OK) {
      const std::string reason = error != nullptr ? error : sqlite3_errmsg(db);
      sqlite3_free(error);
      throw_connect_failed(dsn, sqlite3_extended_errcode(db), reason);
    }
  }
  sqlite3_busy_timeout(db, busy_timeout_ms);
  return conn;
}

std::shared_ptr<Driver> sqlite_driver() {
  static const std::shared_ptr<Driver> driver = std::make_shared<SqliteDriver>();
  return driver;
}

namespace {
// Runs before main() in every program this object file is linked into (the OBJECT library and
// its CMakeLists make sure it is), so find_driver("sqlite") needs no set-up call.
[[maybe_unused]] const bool kRegistered = (register_driver(sqlite_driver()), true);
}  // namespace

}  // namespace reservoir::drivers
