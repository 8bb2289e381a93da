// tests/integration/conformance_test.cpp: one conformance suite, every check run on every
// backend: SQLite, PostgreSQL, MariaDB, and ODBC to each of them (docs/conformance.md).
//
// Each backend describes itself in one Backend value (its DSN, placeholder style, DDL type names,
// how to end a session from outside, its documented exceptions). Test SQL is written with $1-style
// placeholders and rewritten to ? for the backends that need it. A backend whose server or ODBC
// driver is missing is skipped with the reason (or fails, as the fixtures do, under
// RESERVOIR_PG_REQUIRED=1 / RESERVOIR_MARIADB_REQUIRED=1).
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "reservoir/reservoir.hpp"
#include "support/fake_driver.hpp"
#include "support/mariadb_fixture.hpp"
#include "support/odbc_support.hpp"
#include "support/postgres_fixture.hpp"
#include "support/test_util.hpp"

namespace reservoir {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::error_of;
using testing::eventually;

// --- The backends ---------------------------------------------------------------------------

enum class Db { sqlite, postgresql, mariadb };         // the database behind the driver
enum class Kill { none, terminate_backend, kill_id };  // ending a session from outside

// What a backend does instead of the common behaviour; each is a tested exception listed in
// docs/conformance.md.
struct Exceptions {
  // docs/odbc.md "Reset": the driver cannot reset the session, temporary tables (and user
  // variables) reach the next user of the connection.
  bool reset_keeps_session = false;
  // No server: no credentials to get wrong, no session to kill; an unknown database is a file
  // that cannot be opened (connect_failed with SQLite's native code, no SQLSTATE).
  bool serverless = false;
  // ping() runs SELECT 1, which SQLite answers without reading the file: a corrupted database
  // is noticed by the first statement that reads it, not by ping().
  bool ping_misses_corruption = false;
  // The ODBC driver reports a corrupted database file as an ordinary statement error
  // (query_failed), so the connection is not marked broken.
  bool corruption_is_query_failed = false;
};

// Where a backend's DSN comes from: the server found by its fixture (for its Db), or the SQLite
// database file of the test.
struct DsnSource {
  const testing::PostgresServer* pg = nullptr;
  const testing::MariaDbServer* maria = nullptr;
  fs::path file;
};

struct Backend {
  const char* name;  // the test name suffix
  Db db;
  bool odbc;
  // The DSN, or empty with the reason in *why (an ODBC driver package is missing).
  std::string (*dsn)(const DsnSource& source, std::string* why);
  bool dollar_placeholders;  // $1, $2 (may repeat); otherwise positional ?
  // DDL type names.
  const char* bigint;
  const char* dbl;
  const char* text;
  const char* binary;
  Kill kill;
  // SQLSTATE of a syntax error (empty: none, the native code is checked instead).
  const char* syntax_sqlstate;
  std::int64_t syntax_native;  // 0: not checked
  Exceptions exceptions;
};

std::ostream& operator<<(std::ostream& os, const Backend& b) { return os << b.name; }

const Backend kBackends[] = {
    {.name = "sqlite",
     .db = Db::sqlite,
     .odbc = false,
     .dsn = [](const DsnSource& s, std::string*) { return "sqlite://" + s.file.string(); },
     .dollar_placeholders = true,
     .bigint = "INTEGER",
     .dbl = "REAL",
     .text = "TEXT",
     .binary = "BLOB",
     .kill = Kill::none,
     .syntax_sqlstate = "",
     .syntax_native = 1,  // SQLITE_ERROR
     .exceptions = {.serverless = true, .ping_misses_corruption = true}},
    {.name = "postgresql",
     .db = Db::postgresql,
     .odbc = false,
     .dsn = [](const DsnSource& s, std::string*) { return s.pg->dsn; },
     .dollar_placeholders = true,
     .bigint = "bigint",
     .dbl = "double precision",
     .text = "text",
     .binary = "bytea",
     .kill = Kill::terminate_backend,
     .syntax_sqlstate = "42601",
     .syntax_native = 0,
     .exceptions = {}},
    {.name = "mariadb",
     .db = Db::mariadb,
     .odbc = false,
     .dsn = [](const DsnSource& s, std::string*) { return s.maria->dsn; },
     .dollar_placeholders = false,
     .bigint = "BIGINT",
     .dbl = "DOUBLE",
     .text = "TEXT",
     .binary = "BLOB",
     .kill = Kill::kill_id,
     .syntax_sqlstate = "42000",
     .syntax_native = 1064,
     .exceptions = {}},
    {.name = "odbc_postgresql",
     .db = Db::postgresql,
     .odbc = true,
     .dsn = [](const DsnSource& s,
               std::string* why) { return testing::odbc_postgres_dsn(*s.pg, why); },
     .dollar_placeholders = false,
     .bigint = "bigint",
     .dbl = "double precision",
     .text = "text",
     .binary = "bytea",
     .kill = Kill::terminate_backend,
     .syntax_sqlstate = "42601",
     .syntax_native = 0,
     .exceptions = {}},
    {.name = "odbc_mariadb",
     .db = Db::mariadb,
     .odbc = true,
     .dsn = [](const DsnSource& s,
               std::string* why) { return testing::odbc_mariadb_dsn(*s.maria, why); },
     .dollar_placeholders = false,
     .bigint = "BIGINT",
     .dbl = "DOUBLE",
     .text = "TEXT",
     .binary = "BLOB",
     .kill = Kill::kill_id,
     .syntax_sqlstate = "42000",
     .syntax_native = 1064,
     .exceptions = {.reset_keeps_session = true}},
    {.name = "odbc_sqlite",
     .db = Db::sqlite,
     .odbc = true,
     .dsn = [](const DsnSource& s,
               std::string* why) { return testing::odbc_sqlite_dsn(s.file, why); },
     .dollar_placeholders = false,
     .bigint = "BIGINT",
     .dbl = "DOUBLE",
     .text = "TEXT",
     .binary = "BLOB",
     .kill = Kill::none,
     .syntax_sqlstate = "HY000",
     .syntax_native = 1,  // SQLITE_ERROR, passed through by SQLite ODBC
     .exceptions = {.reset_keeps_session = true,
                    .serverless = true,
                    .ping_misses_corruption = true,
                    .corruption_is_query_failed = true}},
};

// --- Helpers --------------------------------------------------------------------------------

Bytes bytes(std::initializer_list<unsigned> values) {
  Bytes out;
  for (unsigned v : values) out.push_back(static_cast<std::byte>(v));
  return out;
}

// Text read from a value that a driver may give as text or as bytes (MariaDB user variables).
std::string text_of(const Value& v) {
  if (v.type() == ValueType::integer) return std::to_string(v.as<std::int64_t>());
  const Bytes b = v.as<Bytes>();
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

// The fixtures' SetUp (skip, or fail under RESERVOIR_*_REQUIRED or when a server should have
// started but did not), run from this suite's SetUp.
struct PgProbe : testing::PostgresTest {
  void TestBody() override {}
  using testing::PostgresTest::pg;
  using testing::PostgresTest::SetUp;
};
struct MariaDbProbe : testing::MariaDbTest {
  void TestBody() override {}
  using testing::MariaDbTest::maria;
  using testing::MariaDbTest::SetUp;
};

// --- The suite ------------------------------------------------------------------------------

class ConformanceTest : public ::testing::TestWithParam<Backend> {
 protected:
  const Backend& b() const { return GetParam(); }
  const Exceptions& ex() const { return GetParam().exceptions; }

  void SetUp() override {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string test = info->name();
    test = test.substr(0, test.find('/'));
    for (char& c : test) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    tag_ = test.substr(0, 12) + "_" + std::to_string(::getpid()) + "_" + b().name;
    if (b().odbc && !testing::odbc_driver_built()) {
      GTEST_SKIP() << "the ODBC driver is not built (unixodbc-dev)";
    }
    std::string why;
    switch (b().db) {
      case Db::sqlite: {
        file_ = fs::temp_directory_path() / ("reservoir_conformance_" + tag_ + ".db");
        remove_file();
        break;
      }
      case Db::postgresql: {
        PgProbe probe;
        probe.SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        pg_ = &probe.pg();
        break;
      }
      case Db::mariadb: {
        MariaDbProbe probe;
        probe.SetUp();
        if (IsSkipped() || HasFatalFailure()) return;
        maria_ = &probe.maria();
        break;
      }
    }
    dsn_ = b().dsn({.pg = pg_, .maria = maria_, .file = file_}, &why);
    if (dsn_.empty()) GTEST_SKIP() << b().name << ": " << why;
    ready_ = true;
  }

  void TearDown() override {
    if (ready_ && !drops_.empty()) {
      try {
        auto c = connect();
        for (const std::string& sql : drops_) c->execute(sql);
      } catch (const Error& e) {
        ADD_FAILURE() << "clean-up failed: " << e.what();
      }
    }
    if (!file_.empty()) remove_file();
  }

  void remove_file() {
    std::error_code ignored;
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      fs::remove(file_.string() + suffix, ignored);
    }
  }

  // A name unique to this test, process and backend; a table of that name is dropped at the end.
  std::string table(const std::string& prefix = "t") {
    std::string name = "c" + prefix + "_" + tag_;
    drops_.push_back("DROP TABLE IF EXISTS " + name);
    return name;
  }

  // Test SQL uses $1, $2, ...; for ? backends every $N becomes ? (in order of appearance, so a
  // repeated $N needs its value passed again).
  std::string sql(std::string_view text) const {
    if (b().dollar_placeholders) return std::string(text);
    std::string out;
    for (std::size_t i = 0; i < text.size(); ++i) {
      if (text[i] == '$' && i + 1 < text.size() &&
          std::isdigit(static_cast<unsigned char>(text[i + 1]))) {
        out += '?';
        while (i + 1 < text.size() && std::isdigit(static_cast<unsigned char>(text[i + 1]))) ++i;
      } else {
        out += text[i];
      }
    }
    return out;
  }

  std::unique_ptr<Connection> connect(const std::string& dsn = {}) {
    const Dsn parsed = Dsn::parse(dsn.empty() ? dsn_ : dsn);
    return find_driver(parsed.scheme)->connect(parsed, 10s);
  }

  PoolOptions options() const {
    PoolOptions o;
    o.dsn = dsn_;
    // No name: a named pool stays registered (and open) until close().
    o.min = 1;
    o.max = 2;
    o.wait_timeout = 10s;
    o.connect_timeout = 10s;
    return o;
  }

  // The DSN with another password (server backends only).
  std::string dsn_with_password(const std::string& password) const {
    std::string why;
    if (pg_ != nullptr) {
      return b().odbc ? testing::odbc_postgres_dsn(*pg_, &why, {}, {}, password)
                      : pg_->dsn_for(pg_->user, password, pg_->database);
    }
    return b().odbc ? testing::odbc_mariadb_dsn(*maria_, &why, {}, {}, password)
                    : maria_->dsn_for(maria_->user, password, maria_->database);
  }

  // The DSN naming a database that does not exist.
  std::string dsn_with_database(const std::string& database) const {
    std::string why;
    switch (b().db) {
      case Db::sqlite: {
        const fs::path missing =
            fs::temp_directory_path() / ("reservoir_no_such_dir_" + tag_) / (database + ".db");
        return b().odbc ? testing::odbc_sqlite_dsn(missing, &why) : "sqlite://" + missing.string();
      }
      case Db::postgresql:
        return b().odbc ? testing::odbc_postgres_dsn(*pg_, &why, {}, {}, {}, database)
                        : pg_->dsn_for(pg_->user, pg_->password, database);
      case Db::mariadb:
        break;
    }
    if (!b().odbc) return maria_->dsn_for(maria_->user, maria_->password, database);
    std::string out = testing::odbc_mariadb_dsn(*maria_, &why);
    const std::string key = ";DATABASE=" + maria_->database + ";";
    out.replace(out.find(key), key.size(), ";DATABASE=" + database + ";");
    return out;
  }

  // The server's id of the session (none for SQLite).
  std::int64_t session_id(Connection& c) const {
    const char* q = b().db == Db::postgresql ? "SELECT pg_backend_pid()" : "SELECT CONNECTION_ID()";
    return c.query(q)[0][0].as<std::int64_t>();
  }

  // Ends session id from a connection of its own and waits until the server has ended it.
  void kill_session(std::int64_t id) {
    auto killer = connect();
    if (b().kill == Kill::terminate_backend) {
      // With a timeout, pg_terminate_backend waits for the backend to be gone.
      const auto rows =
          killer->query(sql("SELECT pg_terminate_backend(CAST($1 AS int), 5000)"), id);
      EXPECT_TRUE(rows[0][0].as<bool>());
    } else {
      killer->execute("KILL CONNECTION " + std::to_string(id));
      EXPECT_TRUE(eventually([&] {
        return killer
                   ->query(sql("SELECT count(*) FROM information_schema.PROCESSLIST WHERE ID = $1"),
                           id)[0][0]
                   .as<std::int64_t>() == 0;
      }));
    }
  }

  std::string dsn_;
  std::string tag_;
  fs::path file_;
  const testing::PostgresServer* pg_ = nullptr;
  const testing::MariaDbServer* maria_ = nullptr;
  std::vector<std::string> drops_;
  bool ready_ = false;
};

// 1. Types round trip: NULL, int64 extremes, doubles, unicode text, binary with 0x00 and 0xff.
TEST_P(ConformanceTest, TypesRoundTrip) {
  const std::string t = table();
  auto pool = Pool::create(options());
  auto c = pool->acquire();
  c->execute("CREATE TABLE " + t + " (id " + b().bigint + ", i " + b().bigint + ", d " + b().dbl +
             ", s " + b().text + ", y " + b().binary + ")");
  const std::string insert = sql("INSERT INTO " + t + " VALUES ($1, $2, $3, $4, $5)");
  constexpr auto kMin = std::numeric_limits<std::int64_t>::min();
  constexpr auto kMax = std::numeric_limits<std::int64_t>::max();
  const std::string unicode = "grüße 🌊 日本";
  const Bytes blob = bytes({0x00, 0x01, 0x00, 0xff, 0x7f, 0x00});
  EXPECT_EQ(c->execute(insert, 1, kMin, 0.1, unicode, blob), 1u);
  EXPECT_EQ(c->execute(insert, 2, kMax, -1e300, std::string("plain"), bytes({0xff, 0x00})), 1u);
  EXPECT_EQ(c->execute(insert, 3, nullptr, nullptr, nullptr, nullptr), 1u);
  const ResultSet rows = c->query("SELECT i, d, s, y FROM " + t + " ORDER BY id");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0][0], Value(kMin));
  EXPECT_EQ(rows[0][1], Value(0.1));
  EXPECT_EQ(rows[0][2], Value(unicode));
  EXPECT_EQ(rows[0][3], Value(blob));
  EXPECT_EQ(rows[1][0], Value(kMax));
  EXPECT_EQ(rows[1][1], Value(-1e300));
  EXPECT_EQ(rows[1][2], Value("plain"));
  EXPECT_EQ(rows[1][3], Value(bytes({0xff, 0x00})));
  const ValueType types[] = {ValueType::integer, ValueType::real, ValueType::text,
                             ValueType::bytes};
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(rows[0][i].type(), types[i]) << "column " << i;
    EXPECT_EQ(rows[1][i].type(), types[i]) << "column " << i;
    EXPECT_TRUE(rows[2][i].is_null()) << "column " << i;
  }
  // The same values as parameters of a WHERE clause find their row.
  EXPECT_EQ(c->query(sql("SELECT id FROM " + t + " WHERE i = $1 AND s = $2"), kMin, unicode).size(),
            1u);
  EXPECT_EQ(c->query(sql("SELECT id FROM " + t + " WHERE y = $1"), blob)[0][0], Value(1));
}

// 2. Parameters: several placeholders, a repeated one, a count mismatch.
TEST_P(ConformanceTest, Parameters) {
  const std::string t = table();
  auto pool = Pool::create(options());
  auto c = pool->acquire();
  c->execute("CREATE TABLE " + t + " (a " + b().bigint + ", b " + b().bigint + ", s " + b().text +
             ")");
  const std::string insert = sql("INSERT INTO " + t + " VALUES ($1, $2, $3)");
  for (int i = 1; i <= 5; ++i) c->execute(insert, i, i * 10, "row" + std::to_string(i));
  EXPECT_EQ(c->query(sql("SELECT s FROM " + t + " WHERE a = $1 AND b = $2 AND s = $3"), 3, 30,
                     "row3")[0][0],
            Value("row3"));
  // $1 used twice: one value where the backend names parameters, passed again for ?.
  const std::string twice = sql("SELECT count(*) FROM " + t + " WHERE a >= $1 AND b >= $1");
  const ResultSet n = b().dollar_placeholders ? c->query(twice, 3) : c->query(twice, 3, 3);
  EXPECT_EQ(n[0][0].as<std::int64_t>(), 3);  // rows 3, 4, 5
  // Too few and too many values.
  const std::string two = sql("SELECT s FROM " + t + " WHERE a = $1 AND b = $2");
  Error e = error_of([&] { c->query(two, 1); });
  EXPECT_EQ(e.code(), ErrorCode::invalid_argument) << e.what();
  e = error_of([&] { c->query(two, 1, 10, 100); });
  EXPECT_EQ(e.code(), ErrorCode::invalid_argument) << e.what();
  e = error_of([&] { c->execute(insert, 1, 2); });
  EXPECT_EQ(e.code(), ErrorCode::invalid_argument) << e.what();
  // The connection stays usable, nothing was inserted.
  EXPECT_FALSE(c->broken());
  EXPECT_EQ(c->query("SELECT count(*) FROM " + t)[0][0].as<std::int64_t>(), 5);
}

// 3. Transactions: commit visible elsewhere, rollback not, a lease released in a transaction is
// rolled back.
TEST_P(ConformanceTest, Transactions) {
  const std::string t = table();
  auto pool = Pool::create(options());
  {
    auto a = pool->acquire();
    auto other = pool->acquire();
    ASSERT_NE(&a.connection(), &other.connection());
    a->execute("CREATE TABLE " + t + " (x " + b().bigint + ")");
    const std::string insert = sql("INSERT INTO " + t + " VALUES ($1)");
    const std::string count = "SELECT count(*) FROM " + t;
    a->begin();
    EXPECT_TRUE(a->in_transaction());
    a->execute(insert, 1);
    a->commit();
    EXPECT_FALSE(a->in_transaction());
    EXPECT_EQ(other->query(count)[0][0].as<std::int64_t>(), 1);
    {
      auto tx = a->transaction();
      a->execute(insert, 2);
      tx.rollback();
    }
    EXPECT_FALSE(a->in_transaction());
    EXPECT_EQ(other->query(count)[0][0].as<std::int64_t>(), 1);
    EXPECT_EQ(a->query(count)[0][0].as<std::int64_t>(), 1);
  }
  pool->reconfigure({.min = 1, .max = 1});
  ASSERT_TRUE(eventually([&] { return pool->opened() == 1; }));
  Connection* first = nullptr;
  {
    auto c = pool->acquire();
    first = &c.connection();
    c->begin();
    c->execute(sql("INSERT INTO " + t + " VALUES ($1)"), 3);
  }  // released inside the transaction
  auto c = pool->acquire();
  EXPECT_EQ(&c.connection(), first);  // the same connection, max 1
  EXPECT_FALSE(c->in_transaction());
  EXPECT_EQ(c->query("SELECT count(*) FROM " + t + " WHERE x = 3")[0][0].as<std::int64_t>(), 0);
  EXPECT_EQ(c->query("SELECT count(*) FROM " + t)[0][0].as<std::int64_t>(), 1);
}

// 4. reset_on_release clears temporary tables and session variables before the next user.
TEST_P(ConformanceTest, ResetClearsSessionState) {
  PoolOptions o = options();
  o.min = 1;
  o.max = 1;
  o.reset_on_release = true;
  auto pool = Pool::create(o);
  const std::string tmp = "ctmp_" + tag_;
  // The session variable per backend: PostgreSQL a setting, MariaDB a user variable; SQLite has
  // none (PRAGMAs are connection settings, not reset).
  const char* show_var = b().db == Db::postgresql ? "SHOW statement_timeout"
                         : b().db == Db::mariadb  ? "SELECT @conformance_v"
                                                  : nullptr;
  Connection* first = nullptr;
  std::string baseline;
  {
    auto c = pool->acquire();
    first = &c.connection();
    c->execute("CREATE TEMPORARY TABLE " + tmp + " (x " + b().bigint + ")");
    c->execute(sql("INSERT INTO " + tmp + " VALUES ($1)"), 7);
    if (b().db == Db::postgresql) {
      baseline = text_of(c->query(show_var)[0][0]);
      c->execute("SET statement_timeout = 4321");
      EXPECT_EQ(text_of(c->query(show_var)[0][0]), "4321ms");
    } else if (b().db == Db::mariadb) {
      c->execute("SET @conformance_v = 42");
      EXPECT_EQ(c->query(show_var)[0][0].as<std::int64_t>(), 42);
    }
  }
  auto c = pool->acquire();
  ASSERT_EQ(&c.connection(), first);  // the same connection, max 1
  if (!ex().reset_keeps_session) {
    const Error e = error_of([&] { c->query("SELECT x FROM " + tmp); });
    EXPECT_EQ(e.code(), ErrorCode::query_failed) << e.what();
    if (b().db == Db::postgresql) {
      EXPECT_EQ(text_of(c->query(show_var)[0][0]), baseline);
    }
    if (b().db == Db::mariadb) {
      EXPECT_TRUE(c->query(show_var)[0][0].is_null());
    }
  } else {
    // Documented exception (docs/odbc.md, "Reset"): SQLite ODBC has no session reset and
    // MariaDB Connector/ODBC accepts SQL_ATTR_RESET_CONNECTION without resetting the server
    // session, so the temporary table (and MariaDB's user variable) reach the next user.
    EXPECT_EQ(c->query("SELECT x FROM " + tmp)[0][0].as<std::int64_t>(), 7);
    if (b().db == Db::mariadb) {
      EXPECT_EQ(c->query(show_var)[0][0].as<std::int64_t>(), 42);
    }
    c->execute("DROP TABLE " + tmp);
  }
  EXPECT_FALSE(c->in_transaction());
}

// 5. ping() notices a session ended from outside; the pool then hands out a healthy connection.
TEST_P(ConformanceTest, PingDetectsAKilledConnection) {
  PoolOptions o = options();
  o.ping_interval = 0ms;
  if (b().db == Db::sqlite) {
    // Overwriting the file in place must reach the reader: no WAL (native driver parameter).
    if (!b().odbc) o.dsn += "?journal_mode=delete";
    const std::string t = table();
    auto pool = Pool::create(o);
    {
      auto c = pool->acquire();
      EXPECT_NO_THROW(c->ping());
      EXPECT_NO_THROW(c->ping(2s));
      EXPECT_FALSE(c->broken());
      c->execute("CREATE TABLE " + t + " (x " + b().bigint + ")");
      c->execute(sql("INSERT INTO " + t + " VALUES ($1)"), 1);
      {
        // SQLite has no server and no session to kill: corrupt the file in place instead (same
        // inode, as a failing disk or a stray writer would), as sqlite_driver_test does.
        std::fstream out(file_, std::ios::binary | std::ios::in | std::ios::out);
        out << std::string(static_cast<std::size_t>(fs::file_size(file_)), 'x');
      }
      if (ex().ping_misses_corruption) {
        // Exception: SELECT 1 does not read the file, so ping() still succeeds.
        EXPECT_NO_THROW(c->ping());
      } else {
        EXPECT_EQ(error_of([&] { c->ping(); }).code(), ErrorCode::connection_lost);
        EXPECT_TRUE(c->broken());
      }
      const Error e = error_of([&] { c->query("SELECT x FROM " + t); });
      if (ex().corruption_is_query_failed) {
        // Exception: SQLite ODBC reports it as an ordinary statement error; not broken.
        EXPECT_EQ(e.code(), ErrorCode::query_failed) << e.what();
        EXPECT_FALSE(c->broken());
        c.drop();  // nobody should inherit it
      } else {
        EXPECT_EQ(e.code(), ErrorCode::connection_lost) << e.what();
        EXPECT_EQ(e.native_code(), 26) << e.what();  // SQLITE_NOTADB
        EXPECT_TRUE(c->broken());
        EXPECT_EQ(error_of([&] { c->ping(); }).code(), ErrorCode::connection_lost);
      }
    }
    // A fresh file: the pool replaces the broken connection with a working one.
    remove_file();
    auto c = pool->acquire();
    EXPECT_NO_THROW(c->ping());
    EXPECT_FALSE(c->broken());
    EXPECT_EQ(c->query("SELECT 1")[0][0].as<std::int64_t>(), 1);
    return;
  }
  auto pool = Pool::create(o);
  std::int64_t id = 0;
  {
    auto c = pool->acquire();
    EXPECT_NO_THROW(c->ping(2s));
    id = session_id(*c);
    kill_session(id);
    const Error e = error_of([&] { c->ping(2s); });
    EXPECT_EQ(e.code(), ErrorCode::connection_lost) << e.what();
    EXPECT_TRUE(c->broken());
  }  // a broken connection is closed on release
  std::int64_t second = 0;
  {
    auto c = pool->acquire();
    EXPECT_FALSE(c->broken());
    second = session_id(*c);
    EXPECT_NE(second, id);
  }
  // An idle connection killed behind the pool's back is caught by the ping before hand-out.
  kill_session(second);
  auto c = pool->acquire();
  EXPECT_FALSE(c->broken());
  EXPECT_NO_THROW(c->ping(2s));
  EXPECT_NE(session_id(*c), second);
  EXPECT_GE(pool->stats().ping_failures, 1u);
}

// 6. Error codes: syntax error, wrong password, unknown database.
TEST_P(ConformanceTest, ErrorCodes) {
  auto pool = Pool::create(options());
  {
    auto c = pool->acquire();
    const Error e = error_of([&] { c->execute("SELEC 1"); });
    EXPECT_EQ(e.code(), ErrorCode::query_failed) << e.what();
    EXPECT_EQ(e.sqlstate(), b().syntax_sqlstate) << e.what();
    if (b().syntax_native != 0) {
      EXPECT_EQ(e.native_code(), b().syntax_native) << e.what();
    }
    EXPECT_FALSE(e.retryable());
    EXPECT_FALSE(c->broken());
    EXPECT_EQ(c->query("SELECT 1")[0][0].as<std::int64_t>(), 1);
  }
  if (!ex().serverless) {
    const std::string wrong = "Wr0ngConformance4711";
    PoolOptions o = options();
    o.dsn = dsn_with_password(wrong);
    o.fail_fast = true;
    const Error e = error_of([&] { Pool::create(o); });
    EXPECT_EQ(e.code(), ErrorCode::auth_failed) << e.what();
    EXPECT_EQ(std::string(e.what()).find(wrong), std::string::npos) << e.what();
    EXPECT_FALSE(e.retryable());
  }
  // Exception (serverless): no credentials; an unknown database is a file in a missing
  // directory, connect_failed with SQLite's SQLITE_CANTOPEN and no SQLSTATE.
  PoolOptions o = options();
  o.dsn = dsn_with_database("reservoir_nope_" + std::to_string(::getpid()));
  o.fail_fast = true;
  const Error e = error_of([&] { Pool::create(o); });
  EXPECT_EQ(e.code(), ErrorCode::connect_failed) << e.what();
  if (ex().serverless) {
    // SQLITE_CANTOPEN; the native driver gives no SQLSTATE, SQLite ODBC its generic HY000. Not
    // 3D000, so retryable() is true (a missing directory may yet appear).
    EXPECT_EQ(e.native_code(), 14) << e.what();
    EXPECT_EQ(e.sqlstate(), b().odbc ? "HY000" : "") << e.what();
    EXPECT_TRUE(e.retryable()) << e.what();
  } else {
    EXPECT_EQ(e.sqlstate(), "3D000") << e.what();
    EXPECT_FALSE(e.retryable()) << e.what();
  }
}

// 7. The lab's sequence scenario: threads drawing from one sequence never see a value twice.
TEST_P(ConformanceTest, SequenceValuesAreDistinctAcrossThreads) {
  const std::string name = table("seq");
  std::string next_sql;
  std::string advance_sql;
  {
    auto c = connect();
    switch (b().db) {
      case Db::sqlite:
        c->execute("CREATE TABLE " + name + " (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT)");
        advance_sql = "INSERT INTO " + name + "(at) VALUES ('now')";
        next_sql = "SELECT last_insert_rowid()";
        break;
      case Db::postgresql:
        drops_.back() = "DROP SEQUENCE IF EXISTS " + name;
        c->execute("CREATE SEQUENCE " + name);
        next_sql = "SELECT nextval('" + name + "')";
        break;
      case Db::mariadb:
        drops_.back() = "DROP SEQUENCE IF EXISTS " + name;
        c->execute("CREATE SEQUENCE " + name);
        next_sql = "SELECT NEXTVAL(" + name + ")";
        break;
    }
  }
  PoolOptions o = options();
  o.min = 2;
  o.max = 5;
  auto pool = Pool::create(o);
  constexpr int kThreads = 4;
  constexpr int kValues = 4;
  std::vector<std::vector<std::int64_t>> got(kThreads);
  std::vector<std::string> errors(kThreads);
  std::vector<std::thread> threads;
  for (int i = 0; i < kThreads; ++i) {
    threads.emplace_back([&, i] {
      try {
        auto c = pool->acquire();
        for (int k = 0; k < kValues; ++k) {
          if (!advance_sql.empty()) c->execute(advance_sql);
          got[i].push_back(c->query(next_sql)[0][0].as<std::int64_t>());
        }
      } catch (const std::exception& e) {
        errors[i] = e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  std::set<std::int64_t> all;
  for (int i = 0; i < kThreads; ++i) {
    EXPECT_EQ(errors[i], "") << "thread " << i;
    all.insert(got[i].begin(), got[i].end());
  }
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kThreads * kValues));
  EXPECT_LE(pool->opened(), 5u);
}

// 8a. The get modes at the cap.
TEST_P(ConformanceTest, GetModesAtTheCap) {
  PoolOptions o = options();
  o.min = 0;
  o.max = 2;
  auto pool = Pool::create(o);
  auto a = pool->acquire();
  auto b2 = pool->acquire();
  ASSERT_EQ(pool->opened(), 2u);
  Error e = error_of([&] { (void)pool->acquire({.get_mode = GetMode::no_wait}); });
  EXPECT_EQ(e.code(), ErrorCode::pool_exhausted) << e.what();
  e = error_of(
      [&] { (void)pool->acquire({.get_mode = GetMode::timed_wait, .wait_timeout = 50ms}); });
  EXPECT_EQ(e.code(), ErrorCode::pool_timeout) << e.what();
  {
    auto extra = pool->acquire({.get_mode = GetMode::force_get});
    EXPECT_EQ(pool->opened(), 3u);
    EXPECT_EQ(extra->query("SELECT 1")[0][0].as<std::int64_t>(), 1);
  }  // closed, not kept, on release above max
  EXPECT_TRUE(eventually([&] { return pool->opened() == 2u; }));
  EXPECT_EQ(pool->idle(), 0u);
  Connection* released = &b2.connection();
  Connection* got = nullptr;
  std::string error;
  std::thread waiter([&] {
    try {
      auto c = pool->acquire({.get_mode = GetMode::wait});
      got = &c.connection();
      c->query("SELECT 1");
    } catch (const std::exception& ex) {
      error = ex.what();
    }
  });
  EXPECT_TRUE(eventually([&] { return pool->waiting() == 1u; }));
  b2.release();
  waiter.join();
  EXPECT_EQ(error, "");
  EXPECT_EQ(got, released);
}

// 8b. Tags with a session callback that sets per-backend session state.
TEST_P(ConformanceTest, TagsWithSessionCallback) {
  // tag -> (statement setting it, what reading it back gives)
  const auto set_sql = [&](std::string_view tag) -> std::string {
    const bool first = tag == "s1";
    switch (b().db) {
      case Db::postgresql:
        return first ? "SET TIME ZONE 'UTC'" : "SET TIME ZONE 'Asia/Tokyo'";
      case Db::mariadb:
        return "SET @tag = '" + std::string(tag) + "'";
      case Db::sqlite:
        break;
    }
    return first ? "PRAGMA cache_size = 1111" : "PRAGMA cache_size = 2222";
  };
  const std::string read_sql = b().db == Db::postgresql ? "SHOW TimeZone"
                               : b().db == Db::mariadb  ? "SELECT @tag"
                                                        : "PRAGMA cache_size";
  const auto expected = [&](std::string_view tag) -> std::string {
    const bool first = tag == "s1";
    switch (b().db) {
      case Db::postgresql:
        return first ? "UTC" : "Asia/Tokyo";
      case Db::mariadb:
        return std::string(tag);
      case Db::sqlite:
        break;
    }
    return first ? "1111" : "2222";
  };
  std::atomic<int> calls{0};
  PoolOptions o = options();
  o.min = 0;
  o.max = 1;
  o.session_callback = [&](Connection& c, std::string_view tag) {
    ++calls;
    if (!tag.empty()) c.execute(set_sql(tag));
  };
  auto pool = Pool::create(o);
  Connection* first = nullptr;
  {
    auto c = pool->acquire({.tag = "s1"});
    first = &c.connection();
    EXPECT_EQ(calls.load(), 1);
    EXPECT_EQ(c.tag(), "s1");
    EXPECT_EQ(text_of(c->query(read_sql)[0][0]), expected("s1"));
  }
  {
    auto c = pool->acquire({.tag = "s1"});  // already in that state: no call
    EXPECT_EQ(&c.connection(), first);
    EXPECT_EQ(calls.load(), 1);
    EXPECT_EQ(text_of(c->query(read_sql)[0][0]), expected("s1"));
  }
  {
    auto c = pool->acquire({.tag = "s2", .match_any_tag = true});  // at the cap: retagged
    EXPECT_EQ(&c.connection(), first);
    EXPECT_EQ(calls.load(), 2);
    EXPECT_EQ(c.tag(), "s2");
    EXPECT_EQ(text_of(c->query(read_sql)[0][0]), expected("s2"));
  }
}

INSTANTIATE_TEST_SUITE_P(Backends, ConformanceTest, ::testing::ValuesIn(kBackends),
                         [](const auto& info) { return std::string(info.param.name); });

}  // namespace
}  // namespace reservoir
