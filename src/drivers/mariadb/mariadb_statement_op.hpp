// mariadb_statement_op.hpp: one statement on a MariaDbConnection over Connector/C's
// non-blocking API (mysql_stmt_*_start / _cont), for the async API.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "drivers/mariadb/mariadb_common.hpp"
#include "reservoir/nonblocking.hpp"
#include "reservoir/value.hpp"

namespace reservoir::drivers {

class MariaDbConnection;

// Runs what MariaDbConnection::execute_params / query_params run, step by step without blocking:
// the same statement cache (a miss prepares with mysql_stmt_prepare_start and caches; a hit
// executes the cached statement; CR_NEW_STMT_METADATA re-runs a read-only statement once, as
// the blocking path does), the same parameter binding, result typing and errors. Rows are
// fetched one by one (mysql_stmt_fetch_start), a CALL's further results are read and dropped,
// statements the prepared protocol refuses run as text (mysql_real_query_start).
//
// Errors from resume(): as the blocking call; connection_lost marks the connection broken().
// abandon() mid-statement shuts the socket down, lets the suspended call fail at once and
// marks the connection broken(): it is never left mid-protocol and reusable.
//
// Lifetime: the connection must outlive the op; while the op runs nobody else uses it.
class MariaDbStatementOp final : public StatementOp {
 public:
  MariaDbStatementOp(MariaDbConnection& conn, std::string_view sql, std::span<const Value> params,
                     bool want_rows);
  ~MariaDbStatementOp() override;

  IoWait resume(bool timed_out) override;
  void abandon() noexcept override;
  std::uint64_t affected() const noexcept override { return affected_; }
  ResultSet take_rows() override { return std::move(result_); }

 private:
  // The call in progress (or about to start).
  enum class Step : std::uint8_t {
    begin,        // nothing sent yet: look up the cache
    prepare,      // mysql_stmt_prepare (a statement not in the cache)
    execute,      // mysql_stmt_execute: sends, reads the result header and columns
    fetch,        // mysql_stmt_fetch: one row
    next_result,  // mysql_stmt_next_result: a CALL's further result
    store_extra,  // mysql_stmt_store_result: that result's rows, dropped
    text_query,   // mysql_real_query: the text protocol (ER_UNSUPPORTED_PS)
    text_store,   // mysql_store_result: its result
    text_next,    // mysql_next_result: further text results, dropped
    done,
  };

  void begin_statement();  // from the cache or to prepare
  void bind_and_execute();
  int start_call();  // starts step_'s call: its wait status (0: finished already)
  int continue_call(int ready);
  void finished_call();  // acts on the finished call's result and picks the next step
  void after_result();   // next_result or done
  void release_statement() noexcept;
  [[noreturn]] void fail();  // the statement's (or the handle's) last error

  MariaDbConnection& conn_;
  const std::string sql_;
  const std::vector<Value> params_;
  const bool want_rows_;

  Step step_ = Step::begin;
  mariadb::PendingWait wait_;  // what the suspended call waits for
  bool over_ = false;          // done, thrown or abandoned
  MYSQL_STMT* stmt_ = nullptr;
  bool owned_ = false;  // stmt_ is not cached: closed at the end
  bool hit_ = false;    // stmt_ came from the cache
  bool may_retry_ = true;
  bool was_idle_ = false;
  bool rows_pending_ = false;  // a result's rows may still be on the wire
  bool has_rows_ = false;      // the statement's result has columns: rows_ is it
  bool text_first_ = true;     // the text protocol's next result is the statement's

  int int_ret_ = 0;
  MYSQL_RES* res_ret_ = nullptr;
  mariadb::ParamBinds binds_;
  mariadb::RowDecoder decoder_;
  std::vector<Row> rows_;
  ResultSet result_;
  std::uint64_t affected_ = 0;
};

}  // namespace reservoir::drivers
