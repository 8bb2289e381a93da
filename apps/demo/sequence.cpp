// apps/demo/sequence.cpp: the per-database SQL of the demo's sequence.
#include "sequence.hpp"

#include <array>
#include <string>
#include <string_view>

#include "reservoir/error.hpp"
#include "reservoir/value.hpp"

namespace demo {
namespace {

constexpr std::array<SequenceSql, 3> kSequences{{
    // SQLite has no sequences: AUTOINCREMENT never reuses a rowid, even after deletes, and
    // last_insert_rowid() is per connection, so concurrent threads each read their own insert.
    {"sqlite",
     "CREATE TABLE IF NOT EXISTS reservoir_demo_seq(id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT)",
     "INSERT INTO reservoir_demo_seq(at) VALUES (datetime('now'))", "SELECT last_insert_rowid()"},
    {"postgresql", "CREATE SEQUENCE IF NOT EXISTS reservoir_demo_seq", "",
     "SELECT nextval('reservoir_demo_seq')"},
    // MariaDB 10.3+ sequences; NEXTVAL takes the bare name, not a string.
    {"mariadb", "CREATE SEQUENCE IF NOT EXISTS reservoir_demo_seq", "",
     "SELECT NEXTVAL(reservoir_demo_seq)"},
}};

const SequenceSql* find_sql(std::string_view scheme) {
  // Behind odbc: any of the databases above may answer: create() asks the database itself.
  if (scheme == "odbc") return nullptr;
  for (const SequenceSql& sql : kSequences) {
    if (sql.scheme == scheme) return &sql;
  }
  std::string known = "odbc";
  for (const SequenceSql& sql : kSequences) {
    known += ", ";
    known += sql.scheme;
  }
  throw reservoir::Error(reservoir::ErrorCode::invalid_argument,
                         "the demo has no sequence SQL for the DSN scheme '" + std::string(scheme) +
                             "' (it knows " + known + ")");
}

// Runs a CREATE ... IF NOT EXISTS. On PostgreSQL, IF NOT EXISTS does not guard against another
// session creating the same name at the same moment: the loser gets 23505 (the catalog's unique
// index) or 42P07. Another demo on the same database (or a test running beside this one) did the
// work then, so once the other's transaction is over the statement succeeds: it is run again.
void execute_create(reservoir::Connection& conn, std::string_view sql) {
  try {
    conn.execute(sql);
  } catch (const reservoir::Error& e) {
    if (e.code() != reservoir::ErrorCode::query_failed ||
        (e.sqlstate() != "23505" && e.sqlstate() != "42P07"))
      throw;
    conn.execute(sql);
  }
}

}  // namespace

Sequence::Sequence(const reservoir::Dsn& dsn) : sql_(find_sql(dsn.scheme)) {
  if (dsn.scheme == "sqlite" && dsn.database == ":memory:") {
    throw reservoir::Error(reservoir::ErrorCode::invalid_argument,
                           "sqlite::memory: gives each pooled connection its own empty database, "
                           "so connections cannot share a sequence; use a file, e.g. "
                           "sqlite:///tmp/reservoir_demo.db");
  }
}

void Sequence::create(reservoir::Connection& conn) {
  if (sql_ != nullptr) {
    execute_create(conn, sql_->create);
    return;
  }
  // ODBC: the first SQL dialect whose sequence works on this database wins (PostgreSQL, then
  // MariaDB, then SQLite's emulation). A probe uses up one value, which is harmless.
  std::string errors;
  for (const SequenceSql& sql : kSequences) {
    try {
      sql_ = &sql;
      execute_create(conn, sql.create);
      (void)next(conn);
      return;
    } catch (const reservoir::Error& e) {
      errors += std::string(errors.empty() ? "" : "; ") + std::string(sql.scheme) + ": " + e.what();
    }
  }
  sql_ = nullptr;
  throw reservoir::Error(reservoir::ErrorCode::unsupported,
                         "the database behind this ODBC DSN takes none of the demo's sequence "
                         "dialects (" + errors + ")");
}

std::int64_t Sequence::next(reservoir::Connection& conn) const {
  if (!sql_->advance.empty()) conn.execute(sql_->advance);
  const reservoir::ResultSet rows = conn.query(sql_->fetch);
  if (rows.size() != 1 || rows[0].size() != 1) {
    throw reservoir::Error(reservoir::ErrorCode::internal,
                           "expected one value from '" + std::string(sql_->fetch) + "', got " +
                               std::to_string(rows.size()) + " row(s)");
  }
  return rows[0][0].as<std::int64_t>();
}

}  // namespace demo
