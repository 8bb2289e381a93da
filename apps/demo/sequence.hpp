// apps/demo/sequence.hpp: the demo's sequence "reservoir_demo_seq", in each database's own SQL.
// All per-database SQL of the demo lives here; add a row to the table in sequence.cpp for a new
// database.
#pragma once

#include <cstdint>
#include <string_view>

#include "reservoir/connection.hpp"
#include "reservoir/dsn.hpp"

namespace demo {

// The statements that create and advance the sequence on one kind of database.
struct SequenceSql {
  std::string_view scheme;   // Dsn::scheme this SQL is for ("sqlite", "postgresql", ...)
  std::string_view create;   // idempotent: safe to run on every start
  std::string_view advance;  // run before `fetch`, on the same connection; empty when not needed
  std::string_view fetch;    // a query returning the new value as one integer
};

// A database sequence, or (on SQLite, which has none) a table emulating one: each value is the
// rowid of a new row, read back on the same connection.
//
// Thread safety: once create() has returned, next() may run in many threads at once, each on its
// own connection.
class Sequence {
 public:
  // The sequence for the database dsn names, chosen by its scheme. Throws
  // reservoir::Error{invalid_argument} for a scheme it has no SQL for (naming those it knows;
  // odbc: is known: create() picks the SQL)
  // and for sqlite::memory:, where every pooled connection has its own empty database.
  explicit Sequence(const reservoir::Dsn& dsn);

  // Creates the sequence unless it exists. Behind an odbc: DSN it first finds which database's
  // SQL works (call it before next(), on one thread). Errors: those of Connection::execute;
  // unsupported when no dialect works behind ODBC.
  void create(reservoir::Connection& conn);

  // Advances the sequence and returns its new value. Values are unique across connections and
  // runs. Errors: those of Connection::execute and query, and internal when the database's
  // answer is not one integer.
  std::int64_t next(reservoir::Connection& conn) const;

 private:
  const SequenceSql* sql_;
};

}  // namespace demo
