// src/core/value.cpp: Value conversions and rendering, and bounds-checked access to rows and
// result sets.
#include "reservoir/value.hpp"

#include <array>
#include <charconv>
#include <cmath>
#include <string>

namespace reservoir {

namespace detail {
void throw_unsigned_too_large(unsigned long long v) {
  throw Error(ErrorCode::invalid_argument, "unsigned value " + std::to_string(v) +
                                               " does not fit a signed 64-bit integer; pass it "
                                               "as text");
}
}  // namespace detail

namespace {

// Shortest text that reads back as the same double ("1.5", "0.1", "1e+300").
std::string format_double(double d) {
  std::array<char, 64> buf{};
  auto [end, ec] = std::to_chars(buf.data(), buf.data() + buf.size(), d);
  if (ec != std::errc()) return "?";  // cannot happen: 64 bytes fit any double
  return std::string(buf.data(), end);
}

bool iequals(std::string_view a, std::string_view b) noexcept {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

}  // namespace

const char* to_string(ValueType type) noexcept {
  switch (type) {
    case ValueType::null:
      return "null";
    case ValueType::boolean:
      return "boolean";
    case ValueType::integer:
      return "integer";
    case ValueType::real:
      return "real";
    case ValueType::text:
      return "text";
    case ValueType::bytes:
      return "bytes";
  }
  return "unknown";
}

std::string Value::to_string() const {
  switch (type()) {
    case ValueType::null:
      return "NULL";
    case ValueType::boolean:
      return std::get<bool>(v_) ? "true" : "false";
    case ValueType::integer:
      return std::to_string(std::get<std::int64_t>(v_));
    case ValueType::real:
      return format_double(std::get<double>(v_));
    case ValueType::text:
      return std::get<std::string>(v_);
    case ValueType::bytes: {
      // PostgreSQL's bytea hex form: readable, unambiguous, and safe to print.
      static constexpr char kHex[] = "0123456789abcdef";
      const Bytes& b = std::get<Bytes>(v_);
      std::string out = "\\x";
      out.reserve(2 + 2 * b.size());
      for (std::byte x : b) {
        const auto u = std::to_integer<unsigned>(x);
        out += kHex[u >> 4];
        out += kHex[u & 0xf];
      }
      return out;
    }
  }
  return "?";
}

void Value::mismatch(const char* wanted) const {
  std::string msg = "value is ";
  msg += reservoir::to_string(type());
  // Numbers are shown because they explain narrowing and fractional failures; text and bytes are
  // not, as they may be long or hold data that does not belong in a log.
  if (type() == ValueType::boolean || type() == ValueType::integer || type() == ValueType::real) {
    msg += ' ';
    msg += to_string();
  }
  msg += ", wanted ";
  msg += wanted;
  if (is_null()) msg += " (read nullable columns with as<std::optional<T>>())";
  throw Error(ErrorCode::type_mismatch, msg);
}

std::int64_t Value::as_int64() const {
  if (auto* i = std::get_if<std::int64_t>(&v_)) return *i;
  if (auto* b = std::get_if<bool>(&v_)) return *b ? 1 : 0;
  if (auto* d = std::get_if<double>(&v_)) {
    // Some drivers hand back whole numbers as reals (SQLite's SUM(), ODBC NUMERIC columns); those
    // read as integers, but anything that would lose a fraction or overflow does not.
    // 2^63 is exactly representable, so the range test itself is exact.
    constexpr double kTwo63 = 9223372036854775808.0;
    if (std::isfinite(*d) && std::trunc(*d) == *d && *d >= -kTwo63 && *d < kTwo63) {
      return static_cast<std::int64_t>(*d);
    }
  }
  mismatch("integer");
}

double Value::as_double() const {
  if (auto* d = std::get_if<double>(&v_)) return *d;
  if (auto* i = std::get_if<std::int64_t>(&v_)) return static_cast<double>(*i);
  mismatch("real");
}

bool Value::as_bool() const {
  if (auto* b = std::get_if<bool>(&v_)) return *b;
  // SQLite and MariaDB have no boolean type and store true/false as 1/0.
  if (auto* i = std::get_if<std::int64_t>(&v_)) {
    if (*i == 0) return false;
    if (*i == 1) return true;
  }
  mismatch("boolean");
}

const Value& Row::operator[](std::size_t i) const {
  if (i >= values_.size()) {
    throw Error(ErrorCode::invalid_argument, "row has " + std::to_string(values_.size()) +
                                                 " columns, asked for column " + std::to_string(i));
  }
  return values_[i];
}

const Row& ResultSet::operator[](std::size_t i) const {
  if (i >= rows_.size()) {
    throw Error(ErrorCode::invalid_argument, "result has " + std::to_string(rows_.size()) +
                                                 " rows, asked for row " + std::to_string(i));
  }
  return rows_[i];
}

std::size_t ResultSet::column_index(std::string_view name) const {
  for (std::size_t i = 0; i < columns_.size(); ++i) {
    if (columns_[i] == name) return i;
  }
  // Databases fold unquoted names differently (PostgreSQL to lower case, others keep the case
  // written), so "COUNT" should still find PostgreSQL's "count".
  for (std::size_t i = 0; i < columns_.size(); ++i) {
    if (iequals(columns_[i], name)) return i;
  }
  std::string msg = "result has no column '" + std::string(name) + "' (columns:";
  if (columns_.empty()) msg += " none";
  for (std::size_t i = 0; i < columns_.size(); ++i) {
    msg += i == 0 ? " " : ", ";
    msg += columns_[i];
  }
  msg += ')';
  throw Error(ErrorCode::invalid_argument, msg);
}

}  // namespace reservoir
