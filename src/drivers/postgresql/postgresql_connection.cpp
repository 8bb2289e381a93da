// postgresql_connection.cpp: statements over the extended protocol, typed values, transactions,
// session reset and an LRU cache of server-side prepared statements on one libpq connection.
#include "drivers/postgresql/postgresql_connection.hpp"

#include <libpq-fe.h>

#include <charconv>
#include <cmath>
#include <limits>
#include <memory>
#include <string>
#include <utility>

#include "drivers/postgresql/postgresql_io.hpp"
#include "drivers/postgresql/postgresql_sql.hpp"
#include "reservoir/error.hpp"

namespace reservoir::drivers {
namespace {

// Type OIDs from PostgreSQL's pg_type.h (stable across versions; the server headers are not
// part of libpq-dev).
constexpr Oid kBoolOid = 16;
constexpr Oid kByteaOid = 17;
constexpr Oid kNameOid = 19;
constexpr Oid kInt8Oid = 20;
constexpr Oid kInt2Oid = 21;
constexpr Oid kInt4Oid = 23;
constexpr Oid kTextOid = 25;
constexpr Oid kFloat4Oid = 700;
constexpr Oid kFloat8Oid = 701;
constexpr Oid kBpcharOid = 1042;
constexpr Oid kVarcharOid = 1043;

// The protocol counts parameters in 16 bits.
constexpr std::size_t kMaxParams = 65535;

struct ResultDeleter {
  void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

// Parameters in the arrays PQexecParams / PQexecPrepared take.
struct EncodedParams {
  std::vector<Oid> types;
  std::vector<const char*> values;
  std::vector<int> lengths;
  std::vector<int> formats;
  std::vector<std::string> text;  // rendered numbers and booleans
  std::vector<Bytes> blobs;       // bytes parameters (Value hands them out only as copies)
};

std::string render_double(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);  // shortest exact form
  return std::string(buf, ec == std::errc() ? end : buf);
}

// Fills p and appends one letter per parameter type to signature: statements prepared with
// other parameter types are other statements.
void encode_params(std::span<const Value> params, EncodedParams& p, std::string& signature) {
  const std::size_t n = params.size();
  p.types.reserve(n);
  p.values.reserve(n);
  p.lengths.reserve(n);
  p.formats.reserve(n);
  p.text.reserve(n);  // never reallocated: values points into these strings
  for (std::size_t i = 0; i < n; ++i) {
    const Value& v = params[i];
    Oid type = 0;
    const char* value = nullptr;
    int length = 0;
    int format = 0;
    char letter = 'u';
    switch (v.type()) {
      case ValueType::null:  // unknown: the server takes the type from the context
        break;
      case ValueType::boolean:
        type = kBoolOid;
        value = v.as<bool>() ? "t" : "f";
        letter = 'b';
        break;
      case ValueType::integer:
        type = kInt8Oid;
        value = p.text.emplace_back(std::to_string(v.as<std::int64_t>())).c_str();
        letter = 'i';
        break;
      case ValueType::real:
        type = kFloat8Oid;
        value = p.text.emplace_back(render_double(v.as<double>())).c_str();
        letter = 'd';
        break;
      case ValueType::text: {
        // Unknown rather than text: "WHERE day = $1" with '2024-01-31' then compares dates, and
        // text goes into json, uuid, numeric, ... columns without a cast.
        const auto s = v.as<std::string_view>();
        if (s.find('\0') != std::string_view::npos) {
          throw Error(ErrorCode::invalid_argument,
                      "postgresql: text parameter $" + std::to_string(i + 1) +
                          " holds a NUL byte, which PostgreSQL text cannot store; pass bytes");
        }
        value = s.data();  // the Value's own std::string: NUL-terminated
        break;
      }
      case ValueType::bytes: {
        type = kByteaOid;
        format = 1;  // binary: the bytes as they are, no escaping
        if (p.blobs.empty()) p.blobs.reserve(n);
        const Bytes& b = p.blobs.emplace_back(v.as<Bytes>());
        if (b.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
          throw Error(
              ErrorCode::invalid_argument,
              "postgresql: bytes parameter $" + std::to_string(i + 1) + " is larger than 2 GiB");
        }
        // A null pointer would be NULL, so an empty value points at an empty string.
        value = b.empty() ? "" : reinterpret_cast<const char*>(b.data());
        length = static_cast<int>(b.size());
        letter = 'x';
        break;
      }
    }
    p.types.push_back(type);
    p.values.push_back(value);
    p.lengths.push_back(length);
    p.formats.push_back(format);
    signature += letter;
  }
}

Value decode_value(const PGresult* res, int row, int col, Oid type) {
  const char* text = PQgetvalue(res, row, col);
  const auto length = static_cast<std::size_t>(PQgetlength(res, row, col));
  const std::string_view s(text, length);
  switch (type) {
    case kBoolOid:
      return Value(s == "t");
    case kInt2Oid:
    case kInt4Oid:
    case kInt8Oid: {
      std::int64_t v = 0;
      const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec == std::errc() && end == s.data() + s.size()) return Value(v);
      break;
    }
    case kFloat4Oid:
    case kFloat8Oid: {
      if (s == "NaN") return Value(std::numeric_limits<double>::quiet_NaN());
      if (s == "Infinity") return Value(std::numeric_limits<double>::infinity());
      if (s == "-Infinity") return Value(-std::numeric_limits<double>::infinity());
      double v = 0;
      const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec == std::errc() && end == s.data() + s.size()) return Value(v);
      break;
    }
    case kByteaOid: {
      // Both the hex (\x...) and the old escape output formats, whichever bytea_output says.
      std::size_t n = 0;
      unsigned char* raw = PQunescapeBytea(reinterpret_cast<const unsigned char*>(text), &n);
      if (raw == nullptr) throw std::bad_alloc();
      const auto* p = reinterpret_cast<const std::byte*>(raw);
      Bytes bytes(p, p + n);
      PQfreemem(raw);
      return Value(std::move(bytes));
    }
    default:  // text types, and the text form of every other type
      break;
  }
  return Value(std::string(s));
}

bool starts_with(std::string_view s, std::string_view prefix) noexcept {
  return s.substr(0, prefix.size()) == prefix;
}

// Rows changed, from the command tag: INSERT, UPDATE, DELETE, MERGE, COPY and CREATE TABLE AS
// count; a query's row count (SELECT n, FETCH n, MOVE n) does not.
std::uint64_t affected_rows(PGresult* res) {
  const std::string_view tag = PQcmdStatus(res);
  if ((PQresultStatus(res) == PGRES_TUPLES_OK && starts_with(tag, "SELECT")) ||
      starts_with(tag, "FETCH") || starts_with(tag, "MOVE")) {
    return 0;
  }
  const std::string_view count = PQcmdTuples(res);
  std::uint64_t n = 0;
  std::from_chars(count.data(), count.data() + count.size(), n);
  return n;
}

ResultSet to_result_set(const PGresult* res, std::uint64_t affected) {
  const int columns = PQnfields(res);
  const int rows = PQntuples(res);
  std::vector<std::string> names;
  std::vector<Oid> types;
  names.reserve(static_cast<std::size_t>(columns));
  types.reserve(static_cast<std::size_t>(columns));
  for (int c = 0; c < columns; ++c) {
    const char* name = PQfname(res, c);
    names.emplace_back(name != nullptr ? name : "");
    types.push_back(PQftype(res, c));
  }
  std::vector<Row> out;
  out.reserve(static_cast<std::size_t>(rows));
  for (int r = 0; r < rows; ++r) {
    std::vector<Value> values;
    values.reserve(static_cast<std::size_t>(columns));
    for (int c = 0; c < columns; ++c) {
      values.push_back(PQgetisnull(res, r, c)
                           ? Value()
                           : decode_value(res, r, c, types[static_cast<std::size_t>(c)]));
    }
    out.emplace_back(std::move(values));
  }
  return ResultSet(std::move(names), std::move(out), affected);
}

std::string field(const PGresult* res, int code) {
  const char* f = res != nullptr ? PQresultErrorField(res, code) : nullptr;
  return f != nullptr ? std::string(f) : std::string();
}

bool ok_status(ExecStatusType s) noexcept {
  return s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK || s == PGRES_EMPTY_QUERY;
}

bool is_copy(ExecStatusType s) noexcept {
  return s == PGRES_COPY_IN || s == PGRES_COPY_OUT || s == PGRES_COPY_BOTH;
}

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
    const ResultPtr res(raw);
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

std::uint64_t PostgresConnection::run(std::string_view sql, std::span<const Value> params,
                                      ResultSet* out) {
  ensure_usable();
  if (params.size() > kMaxParams) {
    throw Error(ErrorCode::invalid_argument, "postgresql: " + std::to_string(params.size()) +
                                                 " parameters; the protocol allows at most 65535");
  }
  if (sql.find('\0') != std::string_view::npos) {
    throw Error(ErrorCode::invalid_argument, "postgresql: the SQL text holds a NUL byte");
  }
  if (!pending_deallocations_.empty()) run_pending_deallocations();

  EncodedParams p;
  // The key doubles as the NUL-terminated SQL text libpq wants: SQL, '\0', parameter types.
  key_scratch_.assign(sql);
  key_scratch_ += '\0';
  encode_params(params, p, key_scratch_);
  const std::string& key = key_scratch_;
  const char* const sqlz = key.c_str();
  const int n = static_cast<int>(params.size());
  const bool cacheable = cache_capacity_ > 0 && sql.size() <= kMaxCachedSqlSize;

  for (int attempt = 0;; ++attempt) {
    const std::string* name = cacheable ? cache_find(key) : nullptr;
    const bool hit = name != nullptr;
    if (!hit) {
      const pg::SqlScan scan = pg::scan_sql(sql);
      if (params.empty() && scan.several_statements) return run_script(sql, out);
      // Checked here, not left to the server: its error would abort an open transaction.
      // PREPARE and CREATE (FUNCTION ... BEGIN ATOMIC) may hold $N of their own.
      const bool own_placeholders = params.empty() && (pg::starts_with_keyword(sql, "prepare") ||
                                                       pg::starts_with_keyword(sql, "create"));
      if (scan.max_placeholder != params.size() && !own_placeholders) {
        throw Error(ErrorCode::invalid_argument,
                    "postgresql: statement has " + std::to_string(scan.max_placeholder) +
                        " placeholders ($1..$N), got " + std::to_string(params.size()) +
                        " parameters: " + pg::shorten_sql(sql));
      }
      if (!cacheable) {
        return finish(PQexecParams(conn_, sqlz, n, p.types.data(), p.values.data(),
                                   p.lengths.data(), p.formats.data(), 0),
                      sql, out);
      }
      std::string fresh = "rsv_" + std::to_string(++statement_counter_);
      const ResultPtr prepared(PQprepare(conn_, fresh.c_str(), sqlz, n, p.types.data()));
      if (!prepared || PQresultStatus(prepared.get()) != PGRES_COMMAND_OK) {
        fail(prepared.get(), sql);
      }
      name = &cache_insert(key, std::move(fresh));
    }

    const bool was_idle = PQtransactionStatus(conn_) == PQTRANS_IDLE;
    ResultPtr res(PQexecPrepared(conn_, name->c_str(), n, p.values.data(), p.lengths.data(),
                                 p.formats.data(), 0));
    if (res && PQresultStatus(res.get()) == PGRES_FATAL_ERROR && !broken()) {
      // The server forgot the statement (DEALLOCATE or DISCARD outside our knowledge), or a
      // schema change altered its result columns: prepare it again. Without an open
      // transaction nothing was lost and the statement simply runs again.
      const std::string state = field(res.get(), PG_DIAG_SQLSTATE);
      const bool unknown = state == "26000";
      const bool stale =
          state == "0A000" &&
          field(res.get(), PG_DIAG_MESSAGE_PRIMARY).find("cached plan") != std::string::npos;
      if (unknown || stale) {
        cache_erase(key, /*deallocate=*/stale);
        if (hit && was_idle && attempt == 0) continue;
      }
    }
    return finish(res.release(), sql, out);
  }
}

std::uint64_t PostgresConnection::run_script(std::string_view sql, ResultSet* out) {
  const std::string text(sql);
  if (PQsendQuery(conn_, text.c_str()) == 0) fail(nullptr, sql);
  ResultPtr error;
  std::uint64_t total = 0;
  ResultSet last;
  while (PGresult* raw = PQgetResult(conn_)) {
    ResultPtr res(raw);
    const ExecStatusType status = PQresultStatus(raw);
    if (is_copy(status)) abandon_copy(res.release(), sql);  // drains the rest, then throws
    if (!ok_status(status)) {
      if (!error) error = std::move(res);
      continue;
    }
    if (error) continue;
    const std::string_view tag = PQcmdStatus(raw);
    if (tag == "DISCARD ALL" || tag == "DEALLOCATE ALL") cache_forget();
    const std::uint64_t n = affected_rows(raw);
    total += n;
    if (out != nullptr) last = to_result_set(raw, n);
  }
  if (error) fail(error.get(), sql);
  if (out != nullptr) *out = std::move(last);
  return total;
}

std::string PostgresConnection::run_command(const char* sql) {
  const ResultPtr res(PQexec(conn_, sql));
  if (!res) fail(nullptr, sql);
  const ExecStatusType status = PQresultStatus(res.get());
  if (!ok_status(status)) fail(res.get(), sql);
  return PQcmdStatus(res.get());
}

std::uint64_t PostgresConnection::finish(pg_result* raw, std::string_view sql, ResultSet* out) {
  ResultPtr res(raw);
  if (!res) fail(nullptr, sql);
  const ExecStatusType status = PQresultStatus(raw);
  if (is_copy(status)) abandon_copy(res.release(), sql);
  if (!ok_status(status)) fail(raw, sql);
  // The application's own DISCARD ALL / DEALLOCATE ALL dropped our statements with theirs.
  const std::string_view tag = PQcmdStatus(raw);
  if (tag == "DISCARD ALL" || tag == "DEALLOCATE ALL") cache_forget();
  const std::uint64_t affected = affected_rows(raw);
  if (out != nullptr) *out = to_result_set(raw, affected);
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
    const std::string victim = std::move(cache_.back().name);
    cache_index_.erase(std::string_view(cache_.back().key));
    cache_.pop_back();
    deallocate(victim);
  }
  cache_.push_front(CachedStatement{key, std::move(name)});
  cache_index_.emplace(std::string_view(cache_.front().key), cache_.begin());
  return cache_.front().name;
}

void PostgresConnection::cache_erase(const std::string& key, bool dealloc) {
  const auto it = cache_index_.find(std::string_view(key));
  if (it == cache_index_.end()) return;
  const std::string name = std::move(it->second->name);
  const auto node = it->second;
  cache_index_.erase(it);
  cache_.erase(node);
  if (dealloc) deallocate(name);
}

void PostgresConnection::deallocate(const std::string& name) {
  // Only deallocate outside a transaction block: a failed transaction refuses every command but
  // ROLLBACK, and in an open one a DEALLOCATE that fails (the application already dropped the
  // statement: 26000) would abort the caller's transaction. The statement goes once it ends.
  if (PQtransactionStatus(conn_) != PQTRANS_IDLE) {
    pending_deallocations_.push_back(name);
    return;
  }
  // The name is ours (rsv_<n>), so splicing it is safe.
  const std::string sql = "DEALLOCATE " + name;
  const ResultPtr res(PQexec(conn_, sql.c_str()));
  if (!res || PQresultStatus(res.get()) != PGRES_COMMAND_OK) {
    // Already gone is harmless (the application deallocated it); a broken link is not.
    if (broken()) fail(res.get(), sql);
  }
}

void PostgresConnection::run_pending_deallocations() {
  if (PQtransactionStatus(conn_) != PQTRANS_IDLE) return;
  std::vector<std::string> names = std::move(pending_deallocations_);
  pending_deallocations_.clear();
  for (const std::string& name : names) deallocate(name);
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
  std::string sqlstate = field(res, PG_DIAG_SQLSTATE);
  const std::string severity = field(res, PG_DIAG_SEVERITY_NONLOCALIZED);
  std::string message = pg::one_line(field(res, PG_DIAG_MESSAGE_PRIMARY));
  if (message.empty() && res != nullptr) message = pg::one_line(PQresultErrorMessage(res));
  if (message.empty()) message = one_line_error();

  std::string text = "postgresql: " + message;
  if (!sqlstate.empty()) text += " (SQLSTATE " + sqlstate + ")";
  if (const std::string detail = pg::one_line(field(res, PG_DIAG_MESSAGE_DETAIL));
      !detail.empty()) {
    text += "; DETAIL: " + detail;
  }
  if (const std::string hint = pg::one_line(field(res, PG_DIAG_MESSAGE_HINT)); !hint.empty()) {
    text += "; HINT: " + hint;
  }

  // The session is over when libpq saw the socket fail, when the server ended it (FATAL:
  // pg_terminate_backend, shutdown) or said so with a connection-exception SQLSTATE.
  const bool link_down = PQstatus(conn_) == CONNECTION_BAD || severity == "FATAL" ||
                         severity == "PANIC" ||
                         (starts_with(sqlstate, "08") && sqlstate != "08P01") ||
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
  const ResultPtr res(raw);
  const ExecStatusType status = raw != nullptr ? PQresultStatus(raw) : PGRES_FATAL_ERROR;
  if (status == PGRES_COPY_IN) {
    PQputCopyEnd(conn_, "COPY FROM STDIN is not supported through reservoir::Connection");
  } else if (status == PGRES_COPY_OUT) {
    char* buffer = nullptr;
    while (PQgetCopyData(conn_, &buffer, 0) > 0) PQfreemem(buffer);
  } else if (status == PGRES_COPY_BOTH) {
    broken_ = true;  // a replication stream: there is no way back to plain commands
  }
  if (!broken_) {
    while (PGresult* rest = PQgetResult(conn_)) PQclear(rest);
  }
  throw Error(ErrorCode::unsupported,
              "postgresql: COPY ... FROM STDIN / TO STDOUT cannot run through execute() or "
              "query(); use native_handle() with libpq's COPY functions; in: " +
                  pg::shorten_sql(sql));
}

}  // namespace reservoir::drivers
