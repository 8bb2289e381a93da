// sqlite_driver_test.cpp: the SQLite driver against real SQLite databases (a temporary file per
// test, and :memory:), reached the way pools reach it: find_driver("sqlite")->connect(...).
#include "drivers/sqlite/sqlite_driver.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <limits>
#include <memory>
#include <reservoir/connection.hpp>
#include <reservoir/driver.hpp>
#include <reservoir/dsn.hpp>
#include <reservoir/error.hpp>
#include <reservoir/transaction.hpp>
#include <reservoir/value.hpp>
#include <string>
#include <vector>

#include "drivers/sqlite/sqlite_connection.hpp"

namespace reservoir {
namespace {

using namespace std::chrono_literals;
namespace fs = std::filesystem;

// SQLite result codes the tests expect (sqlite3.h stays inside src/drivers/sqlite).
constexpr std::int64_t kSqliteError = 1;
constexpr std::int64_t kSqliteBusy = 5;
constexpr std::int64_t kSqliteCantOpen = 14;
constexpr std::int64_t kSqliteNotADb = 26;
constexpr std::int64_t kSqliteConstraintUnique = 2067;

Bytes bytes(std::initializer_list<unsigned> values) {
  Bytes out;
  for (unsigned v : values) out.push_back(static_cast<std::byte>(v));
  return out;
}

// Runs f, which must throw Error with the given code, and returns the error for more checks.
template <class F>
Error expect_error(ErrorCode code, F&& f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), code) << e.what();
    return e;
  }
  ADD_FAILURE() << "no Error thrown, expected " << to_string(code);
  return Error(ErrorCode::internal, "not thrown");
}

// A database file unique to the running test (and suffix), removed with its journal files.
class TempDatabase {
 public:
  explicit TempDatabase(const std::string& suffix = "") {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string("reservoir_sqlite_") + info->test_suite_name() + "_" +
                       info->name() + suffix + "_" + std::to_string(::getpid()) + ".db";
    for (char& c : name) {
      if (c == '/') c = '_';
    }
    path_ = fs::temp_directory_path() / name;
    remove();
  }
  ~TempDatabase() { remove(); }

  const fs::path& path() const { return path_; }
  std::string dsn(const std::string& query = "") const {
    return "sqlite://" + path_.string() + (query.empty() ? "" : "?" + query);
  }

 private:
  void remove() {
    std::error_code ignored;
    for (const char* suffix : {"", "-wal", "-shm", "-journal"}) {
      fs::remove(path_.string() + suffix, ignored);
    }
  }
  fs::path path_;
};

std::unique_ptr<Connection> connect(const std::string& dsn) {
  auto driver = find_driver("sqlite");
  if (driver == nullptr) throw std::runtime_error("the sqlite driver is not registered");
  return driver->connect(Dsn::parse(dsn), 1s);
}

std::int64_t count(Connection& c, const std::string& table) {
  return c.query("SELECT count(*) FROM " + table)[0][0].as<std::int64_t>();
}

class SqliteDriverTest : public ::testing::Test {
 protected:
  TempDatabase db_;
};

// The same tests on a file database and on :memory:.
class SqliteBothTest : public ::testing::TestWithParam<bool> {
 protected:
  void SetUp() override { conn_ = connect(GetParam() ? db_.dsn() : "sqlite::memory:"); }
  TempDatabase db_;
  std::unique_ptr<Connection> conn_;
};

INSTANTIATE_TEST_SUITE_P(Storage, SqliteBothTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "file" : "memory"; });

TEST(SqliteRegistrationTest, RegisteredForItsScheme) {
  const auto driver = find_driver("sqlite");
  ASSERT_NE(driver, nullptr);
  EXPECT_EQ(driver->scheme(), "sqlite");
  EXPECT_EQ(driver, drivers::sqlite_driver());
  const auto schemes = registered_schemes();
  EXPECT_NE(std::find(schemes.begin(), schemes.end(), "sqlite"), schemes.end());
}

TEST_P(SqliteBothTest, IdentifiesItself) {
  EXPECT_NE(conn_->native_handle(), nullptr);
  EXPECT_EQ(conn_->driver_name(), "sqlite");
  EXPECT_FALSE(conn_->broken());
  EXPECT_FALSE(conn_->in_transaction());
  EXPECT_NE(dynamic_cast<drivers::SqliteConnection*>(conn_.get()), nullptr);
}

TEST_P(SqliteBothTest, EveryTypeRoundTrips) {
  // No declared type, so SQLite stores each value with the storage class it was bound as.
  conn_->execute("CREATE TABLE t(id INTEGER PRIMARY KEY, v)");
  const std::string unicode = "h\xC3\xA9llo w\xC3\xB6rld \xE6\x97\xA5\xE6\x9C\xAC \xF0\x9F\x8E\x89";
  const std::string with_nul("a\0b", 3);
  std::vector<std::pair<Value, std::string>> cases;  // value, expected typeof()
  const auto add = [&](Value v, const char* storage) { cases.emplace_back(std::move(v), storage); };
  add(Value(), "null");
  add(Value(std::numeric_limits<std::int64_t>::min()), "integer");
  add(Value(std::numeric_limits<std::int64_t>::max()), "integer");
  add(Value(0), "integer");
  add(Value(-1.5), "real");
  add(Value(1e300), "real");
  add(Value(0.1), "real");
  add(Value(std::numeric_limits<double>::denorm_min()), "real");
  add(Value(unicode), "text");
  add(Value(with_nul), "text");
  add(Value(""), "text");
  add(Value(bytes({0x00, 0xFF, 0x00, 0x01, 0x00})), "blob");
  add(Value(Bytes{}), "blob");
  for (std::size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(conn_->execute("INSERT INTO t(id, v) VALUES ($1, $2)", i, cases[i].first), 1u);
  }
  const auto rows = conn_->query("SELECT v, typeof(v) FROM t ORDER BY id");
  ASSERT_EQ(rows.size(), cases.size());
  for (std::size_t i = 0; i < cases.size(); ++i) {
    SCOPED_TRACE("case " + std::to_string(i) + ": " + cases[i].first.to_string());
    EXPECT_EQ(rows[i][1].as<std::string>(), cases[i].second);
    EXPECT_EQ(rows[i][0], cases[i].first);
  }
  EXPECT_EQ(rows[0][0].type(), ValueType::null);
  EXPECT_EQ(rows[1][0].as<std::int64_t>(), std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(rows[2][0].as<std::int64_t>(), std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(rows[8][0].as<std::string>(), unicode);
  EXPECT_EQ(rows[9][0].as<std::string>().size(), 3u);
  EXPECT_EQ(rows[11][0].as<Bytes>(), bytes({0x00, 0xFF, 0x00, 0x01, 0x00}));
  EXPECT_EQ(rows[12][0].type(), ValueType::bytes);
}

TEST_P(SqliteBothTest, BoolsBindAsZeroAndOne) {
  const auto rows = conn_->query("SELECT $1, $2, typeof($1)", true, false);
  EXPECT_EQ(rows[0][0], Value(1));
  EXPECT_EQ(rows[0][1], Value(0));
  EXPECT_TRUE(rows[0][0].as<bool>());
  EXPECT_FALSE(rows[0][1].as<bool>());
  EXPECT_EQ(rows[0][2].as<std::string>(), "integer");
}

TEST_P(SqliteBothTest, ColumnNamesComeWithEmptyResults) {
  const auto rows = conn_->query("SELECT 1 AS one, 'x' AS two WHERE 0");
  EXPECT_TRUE(rows.empty());
  EXPECT_EQ(rows.columns(), (std::vector<std::string>{"one", "two"}));
  EXPECT_EQ(rows.column_index("two"), 1u);
}

TEST_P(SqliteBothTest, DollarPlaceholdersBindByNumber) {
  auto rows = conn_->query("SELECT $2, $1", 1, "a");
  EXPECT_EQ(rows[0][0], Value("a"));
  EXPECT_EQ(rows[0][1], Value(1));

  rows = conn_->query("SELECT $1 + $1, $2", 20, "b");
  EXPECT_EQ(rows[0][0], Value(40));
  EXPECT_EQ(rows[0][1], Value("b"));

  rows = conn_->query("SELECT ?2, ?1", "first", "second");
  EXPECT_EQ(rows[0][0], Value("second"));
  EXPECT_EQ(rows[0][1], Value("first"));
}

TEST_P(SqliteBothTest, OtherPlaceholdersBindByPosition) {
  auto rows = conn_->query("SELECT ?, ?, ?", 1, "two", 3.0);
  EXPECT_EQ(rows[0][0], Value(1));
  EXPECT_EQ(rows[0][1], Value("two"));
  EXPECT_EQ(rows[0][2], Value(3.0));

  rows = conn_->query("SELECT :b, :a", "x", "y");
  EXPECT_EQ(rows[0][0], Value("x"));
  EXPECT_EQ(rows[0][1], Value("y"));
}

TEST_P(SqliteBothTest, ParameterCountMismatchIsInvalidArgument) {
  auto e = expect_error(ErrorCode::invalid_argument, [&] { conn_->query("SELECT $1, $2", 1); });
  EXPECT_NE(std::string(e.what()).find("statement has 2 placeholders, got 1 parameters"),
            std::string::npos)
      << e.what();
  e = expect_error(ErrorCode::invalid_argument, [&] { conn_->execute("SELECT 1", 5); });
  EXPECT_NE(std::string(e.what()).find("statement has 0 placeholders, got 1 parameters"),
            std::string::npos)
      << e.what();
  // "$3" alone needs three parameters, as in PostgreSQL.
  expect_error(ErrorCode::invalid_argument, [&] { conn_->query("SELECT $3", 1); });
  EXPECT_EQ(conn_->query("SELECT $3", 1, 2, 3)[0][0], Value(3));

  // The (now cached) statement still works with the right count.
  EXPECT_EQ(conn_->query("SELECT $1, $2", 1, 2)[0][1], Value(2));
  EXPECT_FALSE(conn_->broken());
}

TEST_P(SqliteBothTest, QueryErrorsCarryTheNativeCode) {
  auto e = expect_error(ErrorCode::query_failed, [&] { conn_->query("SELEC 1"); });
  EXPECT_EQ(e.native_code(), kSqliteError);
  EXPECT_TRUE(e.sqlstate().empty());
  EXPECT_NE(std::string(e.what()).find("SELEC 1"), std::string::npos) << e.what();
  EXPECT_NE(std::string(e.what()).find("syntax error"), std::string::npos) << e.what();

  conn_->execute("CREATE TABLE u(k TEXT UNIQUE)");
  conn_->execute("INSERT INTO u VALUES ($1)", "k");
  e = expect_error(ErrorCode::query_failed,
                   [&] { conn_->execute("INSERT INTO u VALUES ($1)", "k"); });
  EXPECT_EQ(e.native_code(), kSqliteConstraintUnique) << e.what();
  EXPECT_FALSE(e.retryable());

  // The message quotes only the start of long SQL.
  const std::string long_sql = "SELECT * FROM no_such_table WHERE x IN (" + std::string(300, '1') +
                               ") AND marker_at_the_end = 1";
  e = expect_error(ErrorCode::query_failed, [&] { conn_->query(long_sql); });
  const std::string what = e.what();
  EXPECT_NE(what.find("no such table"), std::string::npos) << what;
  EXPECT_NE(what.find(long_sql.substr(0, 200)), std::string::npos) << what;
  EXPECT_EQ(what.find("marker_at_the_end"), std::string::npos) << what;

  // An error leaves the connection healthy.
  EXPECT_FALSE(conn_->broken());
  EXPECT_FALSE(conn_->in_transaction());
  EXPECT_EQ(count(*conn_, "u"), 1);
}

TEST_P(SqliteBothTest, ExecuteCountsChangedRowsOnly) {
  conn_->execute("CREATE TABLE t(x)");
  EXPECT_EQ(conn_->execute("INSERT INTO t VALUES (1), (2), (3)"), 3u);
  EXPECT_EQ(conn_->execute("UPDATE t SET x = x + 1 WHERE x >= $1", 2), 2u);
  // sqlite3_changes() would still say 2 here: neither statement changes rows.
  EXPECT_EQ(conn_->execute("CREATE TABLE other(y)"), 0u);
  EXPECT_EQ(conn_->execute("SELECT * FROM t"), 0u);
  EXPECT_EQ(conn_->execute("DELETE FROM t WHERE x = $1", 99), 0u);
  EXPECT_EQ(conn_->execute("DELETE FROM t"), 3u);
}

TEST_P(SqliteBothTest, SeveralStatementsRunInOrderWithoutParameters) {
  EXPECT_EQ(conn_->execute("CREATE TABLE a(x); INSERT INTO a VALUES (1); "
                           "INSERT INTO a VALUES (2), (3); -- done"),
            3u);
  EXPECT_EQ(count(*conn_, "a"), 3);
  const auto rows = conn_->query("SELECT 1; SELECT x FROM a ORDER BY x DESC;");
  ASSERT_EQ(rows.size(), 3u);
  EXPECT_EQ(rows[0][0], Value(3));
  // A trailing semicolon or comment is still one statement, so parameters are fine.
  EXPECT_EQ(conn_->query("SELECT $1; /* trailing */", 7)[0][0], Value(7));
  expect_error(ErrorCode::invalid_argument,
               [&] { conn_->execute("INSERT INTO a VALUES ($1); SELECT 1", 4); });
  EXPECT_EQ(count(*conn_, "a"), 3);
  EXPECT_EQ(conn_->execute("  -- nothing to run\n"), 0u);
}

TEST_P(SqliteBothTest, TransactionsCommitAndRollBack) {
  conn_->execute("CREATE TABLE t(x)");
  conn_->begin();
  EXPECT_TRUE(conn_->in_transaction());
  conn_->execute("INSERT INTO t VALUES (1)");
  conn_->rollback();
  EXPECT_FALSE(conn_->in_transaction());
  EXPECT_EQ(count(*conn_, "t"), 0);

  conn_->begin();
  conn_->execute("INSERT INTO t VALUES (2)");
  conn_->commit();
  EXPECT_FALSE(conn_->in_transaction());
  EXPECT_EQ(count(*conn_, "t"), 1);

  // A BEGIN sent as SQL counts too.
  conn_->execute("BEGIN");
  EXPECT_TRUE(conn_->in_transaction());
  conn_->execute("COMMIT");
  EXPECT_FALSE(conn_->in_transaction());

  // Nested BEGIN is SQLite's error; rollback() outside a transaction is a no-op.
  conn_->begin();
  expect_error(ErrorCode::query_failed, [&] { conn_->begin(); });
  conn_->rollback();
  EXPECT_NO_THROW(conn_->rollback());
  expect_error(ErrorCode::query_failed, [&] { conn_->commit(); });
}

TEST_P(SqliteBothTest, TransactionScopeRollsBackUnlessCommitted) {
  conn_->execute("CREATE TABLE t(x)");
  {
    auto tx = conn_->transaction();
    conn_->execute("INSERT INTO t VALUES (1)");
    EXPECT_TRUE(conn_->in_transaction());
  }
  EXPECT_FALSE(conn_->in_transaction());
  EXPECT_EQ(count(*conn_, "t"), 0);
  {
    auto tx = conn_->transaction();
    conn_->execute("INSERT INTO t VALUES (2)");
    tx.commit();
  }
  EXPECT_EQ(count(*conn_, "t"), 1);
}

TEST_F(SqliteDriverTest, CommitIsVisibleToASecondConnectionAndRollbackIsNot) {
  auto a = connect(db_.dsn());
  auto b = connect(db_.dsn());
  a->execute("CREATE TABLE t(x)");

  a->begin();
  a->execute("INSERT INTO t VALUES (1)");
  EXPECT_EQ(count(*b, "t"), 0);  // WAL: the reader sees the last commit, without waiting
  a->commit();
  EXPECT_EQ(count(*b, "t"), 1);

  a->begin();
  a->execute("INSERT INTO t VALUES (2)");
  a->rollback();
  EXPECT_EQ(count(*b, "t"), 1);

  {
    auto tx = a->transaction();
    a->execute("INSERT INTO t VALUES (3)");
  }
  EXPECT_EQ(count(*b, "t"), 1);
  EXPECT_EQ(b->query("SELECT x FROM t")[0][0], Value(1));
}

TEST_F(SqliteDriverTest, FileDatabasesUseWalAndTheBusyTimeout) {
  auto c = connect(db_.dsn());
  EXPECT_EQ(c->query("PRAGMA journal_mode")[0][0], Value("wal"));
  EXPECT_EQ(c->query("PRAGMA busy_timeout")[0][0], Value(5000));

  TempDatabase other("other");
  auto d = connect(other.dsn("journal_mode=DELETE&busy_timeout=250"));
  EXPECT_EQ(d->query("PRAGMA journal_mode")[0][0], Value("delete"));
  EXPECT_EQ(d->query("PRAGMA busy_timeout")[0][0], Value(250));

  auto m = connect("sqlite::memory:");
  EXPECT_EQ(m->query("PRAGMA journal_mode")[0][0], Value("memory"));
}

TEST_F(SqliteDriverTest, BadParametersAreInvalidArguments) {
  expect_error(ErrorCode::invalid_argument, [&] { connect(db_.dsn("journal_mode=bogus")); });
  expect_error(ErrorCode::invalid_argument, [&] { connect(db_.dsn("busy_timeout=soon")); });
  expect_error(ErrorCode::invalid_argument, [&] { connect(db_.dsn("busy_timeout=-1")); });
  EXPECT_FALSE(fs::exists(db_.path()));  // rejected before anything was opened
}

TEST_F(SqliteDriverTest, LockConflictsAreMarkedBusy) {
  auto a = connect(db_.dsn());
  auto b = connect(db_.dsn("busy_timeout=50"));
  a->execute("CREATE TABLE t(x)");
  a->execute("BEGIN IMMEDIATE");
  a->execute("INSERT INTO t VALUES (1)");
  const auto started = std::chrono::steady_clock::now();
  const auto e =
      expect_error(ErrorCode::query_failed, [&] { b->execute("INSERT INTO t VALUES (2)"); });
  EXPECT_GE(std::chrono::steady_clock::now() - started, 40ms);  // it did wait busy_timeout
  EXPECT_EQ(e.native_code() & 0xFF, kSqliteBusy) << e.what();
  EXPECT_NE(std::string(e.what()).find("SQLITE_BUSY"), std::string::npos) << e.what();
  EXPECT_FALSE(b->broken());
  a->commit();
  EXPECT_EQ(b->execute("INSERT INTO t VALUES (2)"), 1u);
}

TEST_F(SqliteDriverTest, MemoryDatabasesArePrivateToTheirConnection) {
  auto a = connect("sqlite::memory:");
  auto b = connect("sqlite::memory:");
  a->execute("CREATE TABLE t(x)");
  a->execute("INSERT INTO t VALUES (1)");
  EXPECT_EQ(count(*a, "t"), 1);
  expect_error(ErrorCode::query_failed, [&] { b->query("SELECT * FROM t"); });
}

TEST_P(SqliteBothTest, ResetClearsSessionState) {
  TempDatabase attached("attached");
  conn_->execute("CREATE TABLE t(x)");
  conn_->execute("INSERT INTO t VALUES (1)");
  conn_->execute("CREATE TEMP TABLE scratch(y)");
  conn_->execute("CREATE INDEX temp.scratch_y ON scratch(y)");
  conn_->execute("CREATE TEMP VIEW v AS SELECT x FROM t");
  conn_->execute("CREATE TEMP TRIGGER trg AFTER INSERT ON t BEGIN SELECT 1; END");
  conn_->execute("ATTACH DATABASE $1 AS aux", attached.path().string());
  conn_->execute("ATTACH DATABASE ':memory:' AS \"odd \"\"name\"");
  conn_->execute("PRAGMA busy_timeout = 1");
  conn_->begin();
  conn_->execute("INSERT INTO t VALUES (2)");
  conn_->execute("INSERT INTO scratch VALUES (3)");

  conn_->reset();

  EXPECT_FALSE(conn_->in_transaction());
  EXPECT_FALSE(conn_->broken());
  EXPECT_EQ(count(*conn_, "t"), 1);  // the rolled-back row is gone
  EXPECT_EQ(count(*conn_, "temp.sqlite_master"), 0);
  expect_error(ErrorCode::query_failed, [&] { conn_->query("SELECT * FROM scratch"); });
  const auto databases = conn_->query("PRAGMA database_list");
  for (const auto& row : databases) {
    const auto name = row[databases.column_index("name")].as<std::string>();
    EXPECT_TRUE(name == "main" || name == "temp") << name;
  }
  EXPECT_EQ(conn_->query("PRAGMA busy_timeout")[0][0], Value(5000));
  // The statements cached before the reset still work.
  EXPECT_EQ(conn_->execute("INSERT INTO t VALUES (2)"), 1u);
  EXPECT_EQ(count(*conn_, "t"), 2);
}

TEST_P(SqliteBothTest, ResetUncoversAMainTableShadowedByATempOne) {
  conn_->execute("CREATE TABLE t(x)");
  conn_->execute("INSERT INTO t VALUES (1)");
  conn_->execute("CREATE TEMP TABLE t(x)");
  EXPECT_EQ(count(*conn_, "t"), 0);  // the TEMP table wins, and this statement is cached
  conn_->reset();
  EXPECT_EQ(count(*conn_, "t"), 1);
}

TEST_P(SqliteBothTest, StatementCacheGivesRightResultsPastItsSize) {
  const std::size_t distinct = drivers::SqliteConnection::kStatementCacheSize * 3;
  for (std::int64_t round = 0; round < 3; ++round) {
    for (std::size_t i = 0; i < distinct; ++i) {
      const auto rows = conn_->query("SELECT $1 + " + std::to_string(i) + " AS n", round);
      ASSERT_EQ(rows[0][0], Value(round + static_cast<std::int64_t>(i)));
      EXPECT_EQ(rows.columns()[0], "n");
      // A hot statement between the others stays cached and keeps working.
      ASSERT_EQ(conn_->query("SELECT $1 * 2", static_cast<std::int64_t>(i))[0][0],
                Value(static_cast<std::int64_t>(i) * 2));
    }
  }
}

TEST_P(SqliteBothTest, CachedStatementsFollowSchemaChanges) {
  conn_->execute("CREATE TABLE t(a)");
  conn_->execute("INSERT INTO t VALUES ($1)", 1);
  auto rows = conn_->query("SELECT * FROM t");
  EXPECT_EQ(rows.columns().size(), 1u);
  conn_->execute("ALTER TABLE t ADD COLUMN b DEFAULT 'two'");
  rows = conn_->query("SELECT * FROM t");
  ASSERT_EQ(rows.columns().size(), 2u);
  EXPECT_EQ(rows[0][1], Value("two"));
  // Recreated with TEXT affinity: the cached INSERT, re-prepared by SQLite, stores text now.
  conn_->execute("DROP TABLE t");
  conn_->execute("CREATE TABLE t(a TEXT)");
  conn_->execute("INSERT INTO t VALUES ($1)", 1);
  EXPECT_EQ(conn_->query("SELECT a, typeof(a) FROM t")[0], Row({Value("1"), Value("text")}));
  // And with more columns than values it fails as SQLite says, without harm to the connection.
  conn_->execute("DROP TABLE t");
  conn_->execute("CREATE TABLE t(a, b, c)");
  const auto e = expect_error(ErrorCode::query_failed,
                              [&] { conn_->execute("INSERT INTO t VALUES ($1)", 1); });
  EXPECT_NE(std::string(e.what()).find("3 columns but 1 values"), std::string::npos) << e.what();
  EXPECT_EQ(conn_->execute("INSERT INTO t VALUES ($1, $2, $3)", 1, 2, 3), 1u);
  EXPECT_EQ(count(*conn_, "t"), 1);
}

TEST_P(SqliteBothTest, PingWorks) {
  EXPECT_NO_THROW(conn_->ping());
  conn_->begin();
  EXPECT_NO_THROW(conn_->ping());
  EXPECT_TRUE(conn_->in_transaction());
  EXPECT_FALSE(conn_->broken());
}

TEST_F(SqliteDriverTest, ConnectToAMissingDirectoryFails) {
  const fs::path missing = fs::temp_directory_path() / "reservoir_no_such_dir_for_sure" / "x.db";
  const auto e =
      expect_error(ErrorCode::connect_failed, [&] { connect("sqlite://" + missing.string()); });
  EXPECT_EQ(e.native_code(), kSqliteCantOpen) << e.what();
  EXPECT_NE(std::string(e.what()).find(missing.string()), std::string::npos) << e.what();
}

TEST_F(SqliteDriverTest, ConnectToAFileThatIsNotADatabaseFails) {
  {
    std::ofstream out(db_.path(), std::ios::binary);
    out << std::string(4096, 'x');
  }
  const auto e = expect_error(ErrorCode::connect_failed, [&] { connect(db_.dsn()); });
  EXPECT_EQ(e.native_code(), kSqliteNotADb) << e.what();
}

TEST_F(SqliteDriverTest, AnUnusableDatabaseBreaksTheConnection) {
  auto c = connect(db_.dsn("journal_mode=delete"));
  c->execute("CREATE TABLE t(x)");
  c->execute("INSERT INTO t VALUES (1)");
  {
    // Overwrite the file in place (same inode, as a failing disk or a stray writer would).
    std::fstream out(db_.path(), std::ios::binary | std::ios::in | std::ios::out);
    out << std::string(static_cast<std::size_t>(fs::file_size(db_.path())), 'x');
  }
  const auto e = expect_error(ErrorCode::connection_lost, [&] { c->query("SELECT * FROM t"); });
  EXPECT_EQ(e.native_code(), kSqliteNotADb) << e.what();
  EXPECT_TRUE(c->broken());
  expect_error(ErrorCode::connection_lost, [&] { c->query("SELECT 1"); });
  expect_error(ErrorCode::connection_lost, [&] { c->ping(); });
  expect_error(ErrorCode::connection_lost, [&] { c->reset(); });
}

}  // namespace
}  // namespace reservoir
