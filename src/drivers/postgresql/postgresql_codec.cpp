// postgresql_codec.cpp: parameters into libpq's arrays, results out of PGresults into Values.
#include "drivers/postgresql/postgresql_codec.hpp"

#include <charconv>
#include <cmath>
#include <limits>
#include <new>
#include <string>
#include <utility>

#include "reservoir/error.hpp"

namespace reservoir::drivers::pg {
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

std::string render_double(double d) {
  if (std::isnan(d)) return "NaN";
  if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
  char buf[32];
  const auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);  // shortest exact form
  return std::string(buf, ec == std::errc() ? end : buf);
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

}  // namespace

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

}  // namespace reservoir::drivers::pg
