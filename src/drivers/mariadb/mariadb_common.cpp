// mariadb_common.cpp: column typing, parameter binding, row decoding, error classification and
// wait-status translation shared by MariaDbConnection's blocking calls and the non-blocking ops.
#include "drivers/mariadb/mariadb_common.hpp"

#include <errmsg.h>
#include <mysqld_error.h>
#include <sys/socket.h>

#include <algorithm>
#include <charconv>
#include <limits>
#include <utility>

#include "reservoir/error.hpp"

namespace reservoir::drivers::mariadb {
namespace {

constexpr unsigned kBinaryCharset = 63;       // the "binary" character set: bytes, not text
constexpr unsigned kConnectionKilled = 1927;  // ER_CONNECTION_KILLED (MariaDB)

}  // namespace

Kind kind_of(const MYSQL_FIELD& f) {
  switch (f.type) {
    case MYSQL_TYPE_NULL:
      return Kind::null;
    case MYSQL_TYPE_TINY:
    case MYSQL_TYPE_SHORT:
    case MYSQL_TYPE_LONG:
    case MYSQL_TYPE_LONGLONG:
    case MYSQL_TYPE_INT24:
    case MYSQL_TYPE_YEAR:
      return (f.flags & UNSIGNED_FLAG) != 0 ? Kind::unsigned_integer : Kind::integer;
    case MYSQL_TYPE_FLOAT:
    case MYSQL_TYPE_DOUBLE:
      return Kind::real;
    case MYSQL_TYPE_TINY_BLOB:
    case MYSQL_TYPE_MEDIUM_BLOB:
    case MYSQL_TYPE_LONG_BLOB:
    case MYSQL_TYPE_BLOB:
    case MYSQL_TYPE_STRING:
    case MYSQL_TYPE_VAR_STRING:
    case MYSQL_TYPE_VARCHAR:
    case MYSQL_TYPE_BIT:
    case MYSQL_TYPE_GEOMETRY:
      // Numbers and dates report charset 63 too; only for strings does it mean "binary".
      return f.charsetnr == kBinaryCharset ? Kind::bytes : Kind::text;
    default:  // DECIMAL, dates and times, JSON, ENUM, SET: their text form
      return Kind::text;
  }
}

static Value bytes_value(const char* data, std::size_t size) {
  const auto* p = reinterpret_cast<const std::byte*>(data);
  return Value(Bytes(p, p + size));
}

// A value the text protocol sent, typed by its column.
static Value decode_text(Kind kind, const char* data, std::size_t size) {
  const std::string_view s(data, size);
  switch (kind) {
    case Kind::null:
      return Value();
    case Kind::integer: {
      std::int64_t v = 0;
      const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec == std::errc() && end == s.data() + s.size()) return Value(v);
      break;
    }
    case Kind::unsigned_integer: {
      std::uint64_t v = 0;
      const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec == std::errc() && end == s.data() + s.size() &&
          v <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
        return Value(static_cast<std::int64_t>(v));
      }
      break;
    }
    case Kind::real: {
      double v = 0;
      const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec == std::errc() && end == s.data() + s.size()) return Value(v);
      break;
    }
    case Kind::bytes:
      return bytes_value(data, size);
    case Kind::text:
      break;
  }
  return Value(std::string(s));
}

std::string shorten_sql(std::string_view sql) {
  constexpr std::size_t kMax = 200;
  std::string out(sql.substr(0, kMax));
  for (char& c : out) {
    if (c == '\n' || c == '\r' || c == '\t') c = ' ';
  }
  if (sql.size() > kMax) out += "...";
  return out;
}

bool is_link_failure(unsigned code, std::string_view sqlstate) {
  return code == CR_SERVER_GONE_ERROR || code == CR_SERVER_LOST ||
         code == CR_SERVER_LOST_EXTENDED || code == kConnectionKilled ||
         code == ER_SERVER_SHUTDOWN || code == CR_CONNECTION_ERROR || code == CR_CONN_HOST_ERROR ||
         // Out of sync: an unread result is in the way and every later command fails alike.
         code == CR_COMMANDS_OUT_OF_SYNC || sqlstate.substr(0, 2) == "08";
}

// Whether sql only reads, so that running it a second time changes nothing: its first keyword
// (after blanks, comments and opening parentheses) is SELECT, SHOW, WITH or VALUES, and the
// word RETURNING appears nowhere in it. An executable comment (/*! or /*M!) counts as writing.
bool reads_only(std::string_view sql) {
  std::size_t i = 0;
  while (i < sql.size()) {
    const char c = sql[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '(') {
      ++i;
    } else if (sql.substr(i, 2) == "/*") {
      if (sql.substr(i, 3) == "/*!" || sql.substr(i, 4) == "/*M!") return false;
      const std::size_t end = sql.find("*/", i + 2);
      if (end == std::string_view::npos) return false;
      i = end + 2;
    } else if (c == '#' || sql.substr(i, 3) == "-- ") {
      const std::size_t end = sql.find('\n', i);
      if (end == std::string_view::npos) return false;
      i = end + 1;
    } else {
      break;
    }
  }
  std::string upper;
  upper.reserve(sql.size() - i);
  for (std::size_t k = i; k < sql.size(); ++k) {
    const char c = sql[k];
    upper.push_back(c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c);
  }
  if (upper.find("RETURNING") != std::string::npos) return false;
  std::size_t word = 0;
  while (word < upper.size() && upper[word] >= 'A' && upper[word] <= 'Z') ++word;
  const std::string_view first = std::string_view(upper).substr(0, word);
  return first == "SELECT" || first == "SHOW" || first == "WITH" || first == "VALUES";
}

void check_param_count(MYSQL_STMT* stmt, std::size_t params, std::string_view sql) {
  const unsigned long expected = mysql_stmt_param_count(stmt);
  if (expected != params) {
    throw Error(ErrorCode::invalid_argument,
                "mariadb: statement has " + std::to_string(expected) + " placeholders (?), got " +
                    std::to_string(params) + " parameters: " + shorten_sql(sql));
  }
}

void throw_unpreparable_with_params(std::string_view sql) {
  throw Error(ErrorCode::unsupported,
              "mariadb: this statement cannot be prepared, so it cannot take parameters: " +
                  shorten_sql(sql));
}

void ParamBinds::bind(std::span<const Value> params) {
  const std::size_t n = params.size();
  binds_.assign(n, MYSQL_BIND{});
  ints_.assign(n, 0);
  reals_.assign(n, 0);
  bools_.assign(n, 0);
  lengths_.assign(n, 0);
  blobs_.assign(n, Bytes{});
  for (std::size_t i = 0; i < n; ++i) {
    MYSQL_BIND& b = binds_[i];
    const Value& v = params[i];
    switch (v.type()) {
      case ValueType::null:
        b.buffer_type = MYSQL_TYPE_NULL;
        break;
      case ValueType::boolean:
        bools_[i] = v.as<bool>() ? 1 : 0;
        b.buffer_type = MYSQL_TYPE_TINY;
        b.buffer = &bools_[i];
        break;
      case ValueType::integer:
        ints_[i] = v.as<std::int64_t>();
        b.buffer_type = MYSQL_TYPE_LONGLONG;
        b.buffer = &ints_[i];
        break;
      case ValueType::real:
        reals_[i] = v.as<double>();
        b.buffer_type = MYSQL_TYPE_DOUBLE;
        b.buffer = &reals_[i];
        break;
      case ValueType::text: {
        const auto s = v.as<std::string_view>();  // the Value's own string
        lengths_[i] = static_cast<unsigned long>(s.size());
        b.buffer_type = MYSQL_TYPE_STRING;
        b.buffer = const_cast<char*>(s.data());
        b.buffer_length = lengths_[i];
        b.length = &lengths_[i];
        break;
      }
      case ValueType::bytes: {
        blobs_[i] = v.as<Bytes>();
        lengths_[i] = static_cast<unsigned long>(blobs_[i].size());
        b.buffer_type = MYSQL_TYPE_BLOB;  // binary: the server keeps the bytes as they are
        b.buffer = blobs_[i].empty() ? static_cast<void*>(&bools_[i]) : blobs_[i].data();
        b.buffer_length = lengths_[i];
        b.length = &lengths_[i];
        break;
      }
    }
  }
}

bool RowDecoder::bind(MYSQL_STMT* stmt, MYSQL_RES* meta) {
  const unsigned columns = mysql_num_fields(meta);
  const MYSQL_FIELD* fields = mysql_fetch_fields(meta);
  names_.clear();
  kinds_.clear();
  names_.reserve(columns);
  kinds_.reserve(columns);
  result_.assign(columns, MYSQL_BIND{});
  int_out_.assign(columns, 0);
  real_out_.assign(columns, 0);
  length_out_.assign(columns, 0);
  null_out_.assign(columns, 0);
  error_out_.assign(columns, 0);
  for (unsigned c = 0; c < columns; ++c) {
    names_.emplace_back(fields[c].name != nullptr ? fields[c].name : "");
    const Kind kind = kind_of(fields[c]);
    kinds_.push_back(kind);
    MYSQL_BIND& b = result_[c];
    b.is_null = &null_out_[c];
    b.error = &error_out_[c];
    b.length = &length_out_[c];
    switch (kind) {
      case Kind::integer:
      case Kind::unsigned_integer:
        b.buffer_type = MYSQL_TYPE_LONGLONG;
        b.buffer = &int_out_[c];
        b.is_unsigned = kind == Kind::unsigned_integer;
        break;
      case Kind::real:
        b.buffer_type = MYSQL_TYPE_DOUBLE;
        b.buffer = &real_out_[c];
        break;
      case Kind::bytes:
        b.buffer_type = MYSQL_TYPE_BLOB;
        break;
      case Kind::null:
      case Kind::text:
        b.buffer_type = MYSQL_TYPE_STRING;
        break;
    }
  }
  return mysql_stmt_bind_result(stmt, result_.data()) == 0;
}

bool RowDecoder::read(MYSQL_STMT* stmt, std::vector<Row>& rows) {
  const std::size_t columns = kinds_.size();
  std::vector<Value> values;
  values.reserve(columns);
  for (unsigned c = 0; c < columns; ++c) {
    if (null_out_[c] != 0 || kinds_[c] == Kind::null) {
      values.emplace_back();
      continue;
    }
    switch (kinds_[c]) {
      case Kind::integer:
        values.emplace_back(static_cast<std::int64_t>(int_out_[c]));
        break;
      case Kind::unsigned_integer: {
        const auto u = static_cast<std::uint64_t>(int_out_[c]);
        if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
          values.emplace_back(std::to_string(u));  // beyond int64: exact, as text
        } else {
          values.emplace_back(static_cast<std::int64_t>(u));
        }
        break;
      }
      case Kind::real:
        values.emplace_back(real_out_[c]);
        break;
      case Kind::text:
      case Kind::bytes:
      case Kind::null: {
        std::string data(length_out_[c], '\0');
        if (!data.empty()) {
          MYSQL_BIND col{};
          unsigned long got = 0;
          col.buffer_type = result_[c].buffer_type;
          col.buffer = data.data();
          col.buffer_length = static_cast<unsigned long>(data.size());
          col.length = &got;
          if (mysql_stmt_fetch_column(stmt, &col, c, 0) != 0) return false;
          data.resize(std::min<std::size_t>(got, data.size()));
        }
        if (kinds_[c] == Kind::bytes) {
          values.push_back(bytes_value(data.data(), data.size()));
        } else {
          values.emplace_back(std::move(data));
        }
        break;
      }
    }
  }
  rows.emplace_back(std::move(values));
  return true;
}

ResultSet decode_text_result(MYSQL_RES* res) {
  const unsigned columns = mysql_num_fields(res);
  const MYSQL_FIELD* fields = mysql_fetch_fields(res);
  std::vector<std::string> names;
  std::vector<Kind> kinds;
  for (unsigned c = 0; c < columns; ++c) {
    names.emplace_back(fields[c].name != nullptr ? fields[c].name : "");
    kinds.push_back(kind_of(fields[c]));
  }
  std::vector<Row> rows;
  while (MYSQL_ROW row = mysql_fetch_row(res)) {
    const unsigned long* lengths = mysql_fetch_lengths(res);
    std::vector<Value> values;
    values.reserve(columns);
    for (unsigned c = 0; c < columns; ++c) {
      values.push_back(row[c] == nullptr ? Value() : decode_text(kinds[c], row[c], lengths[c]));
    }
    rows.emplace_back(std::move(values));
  }
  return ResultSet(std::move(names), std::move(rows), 0);
}

void PendingWait::set(MYSQL* mysql, int status) {
  status_ = status;
  if ((status & MYSQL_WAIT_TIMEOUT) != 0) {
    timeout_at_ = std::chrono::steady_clock::now() +
                  std::chrono::milliseconds(mysql_get_timeout_value_ms(mysql));
  }
}

IoWait PendingWait::io_wait(MYSQL* mysql) const {
  IoWait w;
  const bool read = (status_ & (MYSQL_WAIT_READ | MYSQL_WAIT_EXCEPT)) != 0;
  const bool write = (status_ & MYSQL_WAIT_WRITE) != 0;
  w.kind = read && write ? IoWait::Kind::read_write
           : read        ? IoWait::Kind::read
           : write       ? IoWait::Kind::write
                         : IoWait::Kind::timer;
  w.fd = w.kind == IoWait::Kind::timer ? -1 : static_cast<int>(mysql_get_socket(mysql));
  if ((status_ & MYSQL_WAIT_TIMEOUT) != 0) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(
        timeout_at_ - std::chrono::steady_clock::now());
    // At least 1 ms: 0 would mean "no timeout of the driver's own".
    w.timeout = std::max(left, std::chrono::milliseconds(1));
  }
  return w;
}

int PendingWait::ready(bool timed_out) const {
  if (!timed_out) return status_ & (MYSQL_WAIT_READ | MYSQL_WAIT_WRITE | MYSQL_WAIT_EXCEPT);
  if ((status_ & MYSQL_WAIT_TIMEOUT) == 0) return -1;
  // poll(2) may wake a little early (whole milliseconds): a 2 ms slack.
  const auto slack = std::chrono::milliseconds(2);
  return std::chrono::steady_clock::now() + slack >= timeout_at_ ? MYSQL_WAIT_TIMEOUT : -1;
}

void shutdown_socket(MYSQL* mysql) noexcept {
  const my_socket fd = mysql_get_socket(mysql);
  if (fd >= 0) ::shutdown(fd, SHUT_RDWR);
}

}  // namespace reservoir::drivers::mariadb
