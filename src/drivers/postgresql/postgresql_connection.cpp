// postgresql_connection.cpp: statements over the extended protocol, transactions, session reset
// and an LRU cache of server-side prepared statements on one libpq connection; the steps the
// non-blocking statement (postgresql_statement_op.cpp) shares. Values: postgresql_codec.cpp.
#include "drivers/postgresql/postgresql_connection.hpp"

#include <libpq-fe.h>

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "drivers/postgresql/postgresql_codec.hpp"
#include "drivers/postgresql/postgresql_io.hpp"
#include "drivers/postgresql/postgresql_sql.hpp"
#include "reservoir/error.hpp"

namespace reservoir::drivers {
namespace {

// The protocol counts parameters in 16 bits.
constexpr std::size_t kMaxParams = 65535;

void discard_notice(void*, const char*) {}

}  // namespace

PostgresConnection::PostgresConnection(pg_conn* conn, std::size_t stmt_cache_size,
                                       std::string where) noexcept
    : conn_(conn), cache_capacity_(stmt_cache_size), where_(std::move(where)) {
  // libpq prints notices and warnings to stderr by default; a library must not.
  PQsetNoticeProcessor(conn_, discard_notice, nullptr);
}

PostgresConnection::~PostgresConnection() {
  // PQfinish sends a Terminate message; on a link that is already bad it must not block.
  if (broken()) PQsetnonblocking(conn_, 1);
  PQfinish(conn_);
}

std::uint64_t PostgresConnection::execute_params(std::string_view sql,
                                                 std::span<const Value> params) {
  return run(sql, params, nullptr);
}

ResultSet PostgresConnection::query_params(std::string_view sql, std::span<const Value> params) {
  ResultSet out;
  run(sql, params, &out);
  return out;
}

void PostgresConnection::begin() {
  ensure_usable();
  run_command("BEGIN");
}

void PostgresConnection::commit() {
  ensure_usable();
  if (run_command("COMMIT") == "ROLLBACK") {
    throw Error(ErrorCode::query_failed,
                "postgresql: COMMIT rolled the transaction back, because a statement in it had "
                "failed (SQLSTATE 25P02)",
                {.sqlstate = "25P02"});
  }
}

void PostgresConnection::rollback() {
  ensure_usable();
  if (in_transaction()) run_command("ROLLBACK");
}

bool PostgresConnection::in_transaction() const noexcept {
  const PGTransactionStatusType s = PQtransactionStatus(conn_);
  return s == PQTRANS_INTRANS || s == PQTRANS_INERROR;
}

bool PostgresConnection::broken() const noexcept {
  return broken_ || PQstatus(conn_) == CONNECTION_BAD;
}

void PostgresConnection::ping(std::chrono::milliseconds timeout) {
  ensure_usable();
  // An empty query is the cheapest full round trip: the server parses nothing and answers
  // EmptyQueryResponse, even inside a failed transaction.
  if (PQsendQuery(conn_, "") == 0) lost("ping failed: " + one_line_error());
  if (timeout.count() <= 0) timeout = kDefaultPingTimeout;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (PQisBusy(conn_) != 0) {
    if (!pg::wait_socket(PQsocket(conn_), false, deadline)) {
      lost("ping got no answer within " + std::to_string(timeout.count()) + " ms");
    }
    if (PQconsumeInput(conn_) == 0) lost("ping failed: " + one_line_error());
  }
  bool ok = false;
  std::string error;
  while (PGresult* raw = PQgetResult(conn_)) {
    const pg::ResultPtr res(raw);
    if (PQresultStatus(raw) == PGRES_EMPTY_QUERY) {
      ok = true;
    } else if (error.empty()) {
      error = pg::one_line(PQresultErrorMessage(raw));
    }
  }
  if (!ok || !error.empty() || broken()) {
    lost("ping failed: " + (error.empty() ? one_line_error() : error));
  }
}

void PostgresConnection::reset() {
  ensure_usable();
  if (in_transaction()) run_command("ROLLBACK");
  // DISCARD ALL drops the server side of every cached statement, so the cache only forgets.
  run_command("DISCARD ALL");
  cache_forget();
}

void PostgresConnection::check_statement(std::string_view sql,
                                         std::span<const Value> params) const {
  ensure_usable();
  if (params.size() > kMaxParams) {
    throw Error(ErrorCode::invalid_argument, "postgresql: " + std::to_string(params.size()) +
                                                 " parameters; the protocol allows at most 65535");
  }
  if (sql.find('\0') != std::string_view::npos) {
    throw Error(ErrorCode::invalid_argument, "postgresql: the SQL text holds a NUL byte");
  }
}

bool PostgresConnection::cacheable(std::string_view sql) const noexcept {
  return cache_capacity_ > 0 && sql.size() <= kMaxCachedSqlSize;
}

PostgresConnection::Route PostgresConnection::route(std::string_view sql, std::size_t n_params,
                                                    bool cacheable) const {
  const pg::SqlScan scan = pg::scan_sql(sql);
  if (n_params == 0 && scan.several_statements) return Route::script;
  // Checked here, not left to the server: its error would abort an open transaction.
  // PREPARE and CREATE (FUNCTION ... BEGIN ATOMIC) may hold $N of their own.
  const bool own_placeholders = n_params == 0 && (pg::starts_with_keyword(sql, "prepare") ||
                                                  pg::starts_with_keyword(sql, "create"));
  if (scan.max_placeholder != n_params && !own_placeholders) {
    throw Error(ErrorCode::invalid_argument,
                "postgresql: statement has " + std::to_string(scan.max_placeholder) +
                    " placeholders ($1..$N), got " + std::to_string(n_params) +
                    " parameters: " + pg::shorten_sql(sql));
  }
  return cacheable ? Route::prepare : Route::unnamed;
}

std::string PostgresConnection::next_statement_name() {
  return "rsv_" + std::to_string(++statement_counter_);
}

void PostgresConnection::check_prepared(const pg_result* res, std::string_view sql) {
  if (res == nullptr || PQresultStatus(res) != PGRES_COMMAND_OK) fail(res, sql);
}

bool PostgresConnection::forget_failed_statement(const pg_result* res, const std::string& key,
                                                 bool hit, bool was_idle, int attempt) {
  if (res == nullptr || PQresultStatus(res) != PGRES_FATAL_ERROR || broken()) return false;
  // The server forgot the statement (DEALLOCATE or DISCARD outside our knowledge), or a
  // schema change altered its result columns: prepare it again. Without an open
  // transaction nothing was lost and the statement simply runs again.
  const std::string state = pg::field(res, PG_DIAG_SQLSTATE);
  const bool unknown = state == "26000";
  const bool stale =
      state == "0A000" &&
      pg::field(res, PG_DIAG_MESSAGE_PRIMARY).find("cached plan") != std::string::npos;
  if (!unknown && !stale) return false;
  cache_erase(key, /*deallocate=*/stale);
  return hit && was_idle && attempt == 0;
}

std::uint64_t PostgresConnection::run(std::string_view sql, std::span<const Value> params,
                                      ResultSet* out) {
  check_statement(sql, params);
  run_pending_deallocations();

  pg::EncodedParams p;
  // The key doubles as the NUL-terminated SQL text libpq wants: SQL, '\0', parameter types.
  key_scratch_.assign(sql);
  key_scratch_ += '\0';
  pg::encode_params(params, p, key_scratch_);
  const std::string& key = key_scratch_;
  const char* const sqlz = key.c_str();
  const int n = static_cast<int>(params.size());
  const bool can_cache = cacheable(sql);

  for (int attempt = 0;; ++attempt) {
    const std::string* name = can_cache ? cache_find(key) : nullptr;
    const bool hit = name != nullptr;
    if (!hit) {
      const Route r = route(sql, params.size(), can_cache);
      if (r == Route::script) return run_script(sql, out);
      if (r == Route::unnamed) {
        return finish(PQexecParams(conn_, sqlz, n, p.types.data(), p.values.data(),
                                   p.lengths.data(), p.formats.data(), 0),
                      sql, out);
      }
      std::string fresh = next_statement_name();
      const pg::ResultPtr prepared(PQprepare(conn_, fresh.c_str(), sqlz, n, p.types.data()));
      check_prepared(prepared.get(), sql);
      name = &cache_insert(key, std::move(fresh));
      run_pending_deallocations();  // the statement it evicted
    }

    const bool was_idle = PQtransactionStatus(conn_) == PQTRANS_IDLE;
    pg::ResultPtr res(PQexecPrepared(conn_, name->c_str(), n, p.values.data(), p.lengths.data(),
                                     p.formats.data(), 0));
    const bool again = forget_failed_statement(res.get(), key, hit, was_idle, attempt);
    if (res && PQresultStatus(res.get()) == PGRES_FATAL_ERROR) run_pending_deallocations();
    if (again) continue;
    return finish(res.release(), sql, out);
  }
}

std::uint64_t PostgresConnection::run_script(std::string_view sql, ResultSet* out) {
  const std::string text(sql);
  if (PQsendQuery(conn_, text.c_str()) == 0) fail(nullptr, sql);
  std::vector<pg::ResultPtr> results;
  while (PGresult* raw = PQgetResult(conn_)) {
    pg::ResultPtr res(raw);
    if (pg::is_copy(PQresultStatus(raw))) abandon_copy(res.release(), sql);  // drains, throws
    results.push_back(std::move(res));
  }
  return finish_script(results, sql, out);
}

std::uint64_t PostgresConnection::finish_script(std::vector<pg::ResultPtr>& results,
                                                std::string_view sql, ResultSet* out) {
  const pg_result* error = nullptr;
  std::uint64_t total = 0;
  ResultSet last;
  for (const pg::ResultPtr& res : results) {
    PGresult* const raw = res.get();
    if (!pg::ok_status(PQresultStatus(raw))) {
      if (error == nullptr) error = raw;
      continue;
    }
    if (error != nullptr) continue;
    note_command(raw);
    const std::uint64_t n = pg::affected_rows(raw);
    total += n;
    if (out != nullptr) last = pg::to_result_set(raw, n);
  }
  if (error != nullptr) fail(error, sql);
  if (out != nullptr) *out = std::move(last);
  return total;
}

void PostgresConnection::note_command(pg_result* res) noexcept {
  // The application's own DISCARD ALL / DEALLOCATE ALL dropped our statements with theirs.
  const std::string_view tag = PQcmdStatus(res);
  if (tag == "DISCARD ALL" || tag == "DEALLOCATE ALL") cache_forget();
}

std::string PostgresConnection::run_command(const char* sql) {
  const pg::ResultPtr res(PQexec(conn_, sql));
  if (!res) fail(nullptr, sql);
  const ExecStatusType status = PQresultStatus(res.get());
  if (!pg::ok_status(status)) fail(res.get(), sql);
  return PQcmdStatus(res.get());
}

std::uint64_t PostgresConnection::finish(pg_result* raw, std::string_view sql, ResultSet* out) {
  pg::ResultPtr res(raw);
  if (!res) fail(nullptr, sql);
  const ExecStatusType status = PQresultStatus(raw);
  if (pg::is_copy(status)) abandon_copy(res.release(), sql);
  if (!pg::ok_status(status)) fail(raw, sql);
  note_command(raw);
  const std::uint64_t affected = pg::affected_rows(raw);
  if (out != nullptr) *out = pg::to_result_set(raw, affected);
  return affected;
}

const std::string* PostgresConnection::cache_find(const std::string& key) noexcept {
  const auto it = cache_index_.find(std::string_view(key));
  if (it == cache_index_.end()) return nullptr;
  cache_.splice(cache_.begin(), cache_, it->second);  // most recently used first
  return &it->second->name;
}

const std::string& PostgresConnection::cache_insert(const std::string& key, std::string name) {
  if (cache_.size() >= cache_capacity_) {
    std::string victim = std::move(cache_.back().name);
    cache_index_.erase(std::string_view(cache_.back().key));
    cache_.pop_back();
    deallocate(std::move(victim));
  }
  cache_.push_front(CachedStatement{key, std::move(name)});
  cache_index_.emplace(std::string_view(cache_.front().key), cache_.begin());
  return cache_.front().name;
}

void PostgresConnection::cache_erase(const std::string& key, bool dealloc) {
  const auto it = cache_index_.find(std::string_view(key));
  if (it == cache_index_.end()) return;
  std::string name = std::move(it->second->name);
  const auto node = it->second;
  cache_index_.erase(it);
  cache_.erase(node);
  if (dealloc) deallocate(std::move(name));
}

void PostgresConnection::deallocate(std::string name) {
  // Queued, and sent by the caller (run_pending_deallocations, or the non-blocking statement's
  // own step) only outside a transaction block: a failed transaction refuses every command but
  // ROLLBACK, and in an open one a DEALLOCATE that fails (the application already dropped the
  // statement: 26000) would abort the caller's transaction. The statement goes once it ends.
  pending_deallocations_.push_back(std::move(name));
}

bool PostgresConnection::can_deallocate() const noexcept {
  return !pending_deallocations_.empty() && PQtransactionStatus(conn_) == PQTRANS_IDLE;
}

std::string PostgresConnection::deallocate_sql(const std::string& name) {
  // The name is ours (rsv_<n>), so splicing it is safe.
  return "DEALLOCATE " + name;
}

void PostgresConnection::check_deallocated(const pg_result* res, std::string_view sql) {
  // Already gone is harmless (the application deallocated it); a broken link is not.
  if (res == nullptr || PQresultStatus(res) != PGRES_COMMAND_OK) {
    if (broken()) fail(res, sql);
  }
}

void PostgresConnection::run_pending_deallocations() {
  if (!can_deallocate()) return;
  std::vector<std::string> names = std::move(pending_deallocations_);
  pending_deallocations_.clear();
  for (const std::string& name : names) {
    const std::string sql = deallocate_sql(name);
    const pg::ResultPtr res(PQexec(conn_, sql.c_str()));
    check_deallocated(res.get(), sql);
  }
}

void PostgresConnection::cache_forget() noexcept {
  cache_index_.clear();
  cache_.clear();
  pending_deallocations_.clear();
}

void PostgresConnection::ensure_usable() const {
  if (broken()) {
    throw Error(ErrorCode::connection_lost,
                "postgresql: the connection to " + where_ +
                    " is broken (an earlier call lost the link); the pool discards it");
  }
}

std::string PostgresConnection::one_line_error() const {
  std::string text = pg::one_line(PQerrorMessage(conn_));
  return text.empty() ? std::string("no message from libpq") : text;
}

void PostgresConnection::lost(const std::string& what) {
  broken_ = true;
  throw Error(ErrorCode::connection_lost, "postgresql: " + what + " (" + where_ + ")");
}

void PostgresConnection::fail(const pg_result* res, std::string_view sql) {
  std::string sqlstate = pg::field(res, PG_DIAG_SQLSTATE);
  const std::string severity = pg::field(res, PG_DIAG_SEVERITY_NONLOCALIZED);
  std::string message = pg::one_line(pg::field(res, PG_DIAG_MESSAGE_PRIMARY));
  if (message.empty() && res != nullptr) message = pg::one_line(PQresultErrorMessage(res));
  if (message.empty()) message = one_line_error();

  std::string text = "postgresql: " + message;
  if (!sqlstate.empty()) text += " (SQLSTATE " + sqlstate + ")";
  if (const std::string detail = pg::one_line(pg::field(res, PG_DIAG_MESSAGE_DETAIL));
      !detail.empty()) {
    text += "; DETAIL: " + detail;
  }
  if (const std::string hint = pg::one_line(pg::field(res, PG_DIAG_MESSAGE_HINT)); !hint.empty()) {
    text += "; HINT: " + hint;
  }

  // The session is over when libpq saw the socket fail, when the server ended it (FATAL:
  // pg_terminate_backend, shutdown) or said so with a connection-exception SQLSTATE.
  const bool link_down = PQstatus(conn_) == CONNECTION_BAD || severity == "FATAL" ||
                         severity == "PANIC" ||
                         (pg::starts_with(sqlstate, "08") && sqlstate != "08P01") ||
                         sqlstate == "57P01" || sqlstate == "57P02" || sqlstate == "57P03";
  if (link_down) {
    broken_ = true;
    throw Error(ErrorCode::connection_lost,
                text + "; the connection to " + where_ + " is lost; in: " + pg::shorten_sql(sql),
                {.sqlstate = std::move(sqlstate)});
  }
  // What the parameter check before sending cannot see: "$1" with no parameters given.
  if (sqlstate == "42P02" ||
      (sqlstate == "08P01" && message.find("bind message supplies") != std::string::npos)) {
    throw Error(ErrorCode::invalid_argument, text + "; in: " + pg::shorten_sql(sql),
                {.sqlstate = std::move(sqlstate)});
  }
  throw Error(ErrorCode::query_failed, text + "; in: " + pg::shorten_sql(sql),
              {.sqlstate = std::move(sqlstate)});
}

void PostgresConnection::abandon_copy(pg_result* raw, std::string_view sql) {
  const pg::ResultPtr res(raw);
  const ExecStatusType status = raw != nullptr ? PQresultStatus(raw) : PGRES_FATAL_ERROR;
  if (status == PGRES_COPY_IN) {
    PQputCopyEnd(conn_, kCopyRefusal);
  } else if (status == PGRES_COPY_OUT) {
    char* buffer = nullptr;
    while (PQgetCopyData(conn_, &buffer, 0) > 0) PQfreemem(buffer);
  } else if (status == PGRES_COPY_BOTH) {
    broken_ = true;  // a replication stream: there is no way back to plain commands
  }
  if (!broken_) {
    while (PGresult* rest = PQgetResult(conn_)) PQclear(rest);
  }
  copy_unsupported(sql);
}

void PostgresConnection::copy_unsupported(std::string_view sql) {
  throw Error(ErrorCode::unsupported,
              "postgresql: COPY ... FROM STDIN / TO STDOUT cannot run through execute() or "
              "query(); use native_handle() with libpq's COPY functions; in: " +
                  pg::shorten_sql(sql));
}

}  // namespace reservoir::drivers
