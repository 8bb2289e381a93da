// reservoir/value.hpp: typed values (NULL, bool, int64, double, text, bytes) for parameters and
// result rows, the same for every driver.
//
//   auto rows = conn->query("SELECT id, name FROM items WHERE price < $1", 10.0);
//   for (const auto& row : rows) use(row[0].as<std::int64_t>(), row[1].as<std::string>());
#pragma once

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "reservoir/error.hpp"

namespace reservoir {

using Bytes = std::vector<std::byte>;

namespace detail {
// Used by Value::as<T>() to spot std::optional<U>; testing T::value_type instead would be
// ill-formed for T = int.
template <class T>
inline constexpr bool kIsOptional = false;
// Integral types (bool aside) whose every value fits std::int64_t.
template <class T>
inline constexpr bool kFitsInt64 =
    std::is_integral_v<T> && !std::is_same_v<T, bool> &&
    (std::is_signed_v<T> ? sizeof(T) <= sizeof(std::int64_t) : sizeof(T) < sizeof(std::int64_t));
// Throws Error{invalid_argument} for an unsigned value above INT64_MAX.
[[noreturn]] void throw_unsigned_too_large(unsigned long long v);
template <class T>
inline constexpr bool kIsOptional<std::optional<T>> = true;
}  // namespace detail

enum class ValueType : std::uint8_t { null, boolean, integer, real, text, bytes };
const char* to_string(ValueType type) noexcept;

// One database value. Cheap to move; copying copies text and bytes.
class Value {
 public:
  Value() noexcept = default;  // NULL
  Value(std::nullptr_t) noexcept {}
  Value(std::nullopt_t) noexcept {}
  Value(bool v) noexcept : v_(v) {}
  template <class T>
    requires(detail::kFitsInt64<T>)
  Value(T v) noexcept : v_(static_cast<std::int64_t>(v)) {}
  // 64-bit unsigned: a value above INT64_MAX throws Error{invalid_argument} rather than wrap
  // (pass such values as text).
  template <class T>
    requires(std::is_integral_v<T> && std::is_unsigned_v<T> && !std::is_same_v<T, bool> &&
             sizeof(T) == sizeof(std::int64_t))
  Value(T v) : v_(checked_int64(v)) {}
  Value(float v) noexcept : v_(static_cast<double>(v)) {}
  Value(double v) noexcept : v_(v) {}
  Value(const char* v) : v_(std::string(v)) {}
  Value(std::string_view v) : v_(std::string(v)) {}
  Value(std::string v) noexcept : v_(std::move(v)) {}
  Value(Bytes v) noexcept : v_(std::move(v)) {}
  template <class T>
  Value(const std::optional<T>& v) : Value() {
    if (v) *this = Value(*v);
  }

  ValueType type() const noexcept { return static_cast<ValueType>(v_.index()); }
  bool is_null() const noexcept { return v_.index() == 0; }

  // The value as T. Integers convert to any integral type that holds them (else type_mismatch),
  // integers and reals convert to double, bool reads 0/1 integers (SQLite and MariaDB store
  // booleans so). as<std::optional<T>>() maps NULL to nullopt; any other as<T>() of NULL throws
  // Error{type_mismatch}.
  template <class T>
  T as() const;

  // A readable rendering for logs and the demo: NULL, true, 42, 1.5, text, \x0a0b.
  std::string to_string() const;

  friend bool operator==(const Value&, const Value&) = default;

 private:
  static std::int64_t checked_int64(unsigned long long v) {
    if (v > static_cast<unsigned long long>(std::numeric_limits<std::int64_t>::max())) {
      detail::throw_unsigned_too_large(v);
    }
    return static_cast<std::int64_t>(v);
  }
  [[noreturn]] void mismatch(const char* wanted) const;
  std::int64_t as_int64() const;
  double as_double() const;
  bool as_bool() const;

  std::variant<std::monostate, bool, std::int64_t, double, std::string, Bytes> v_;
};

template <class T>
T Value::as() const {
  if constexpr (detail::kIsOptional<T>) {
    if (is_null()) return std::nullopt;
    return as<typename T::value_type>();
  } else if constexpr (std::is_same_v<T, bool>) {
    return as_bool();
  } else if constexpr (std::is_integral_v<T>) {
    std::int64_t v = as_int64();
    if (v < static_cast<std::int64_t>(std::numeric_limits<T>::min()) ||
        (v > 0 && static_cast<std::uint64_t>(v) > std::numeric_limits<T>::max()))
      mismatch("a narrower integer");
    return static_cast<T>(v);
  } else if constexpr (std::is_floating_point_v<T>) {
    return static_cast<T>(as_double());
  } else if constexpr (std::is_same_v<T, std::string>) {
    if (auto* s = std::get_if<std::string>(&v_)) return *s;
    mismatch("text");
  } else if constexpr (std::is_same_v<T, std::string_view>) {
    if (auto* s = std::get_if<std::string>(&v_)) return *s;
    mismatch("text");
  } else if constexpr (std::is_same_v<T, Bytes>) {
    if (auto* b = std::get_if<Bytes>(&v_)) return *b;
    if (auto* s = std::get_if<std::string>(&v_)) {
      const auto* p = reinterpret_cast<const std::byte*>(s->data());
      return Bytes(p, p + s->size());
    }
    mismatch("bytes");
  } else {
    static_assert(sizeof(T) == 0, "Value::as<T>: unsupported T");
  }
}

// One result row: values by column position.
class Row {
 public:
  Row() = default;
  explicit Row(std::vector<Value> values) noexcept : values_(std::move(values)) {}
  const Value& operator[](std::size_t i) const;  // throws invalid_argument when out of range
  std::size_t size() const noexcept { return values_.size(); }
  auto begin() const noexcept { return values_.begin(); }
  auto end() const noexcept { return values_.end(); }
  std::vector<Value>& values() noexcept { return values_; }
  friend bool operator==(const Row&, const Row&) = default;

 private:
  std::vector<Value> values_;
};

// The rows a query returned, with the column names and the count of affected rows.
class ResultSet {
 public:
  ResultSet() = default;
  ResultSet(std::vector<std::string> columns, std::vector<Row> rows, std::uint64_t affected = 0)
      : columns_(std::move(columns)), rows_(std::move(rows)), affected_(affected) {}

  const std::vector<std::string>& columns() const noexcept { return columns_; }
  std::size_t size() const noexcept { return rows_.size(); }
  bool empty() const noexcept { return rows_.empty(); }
  const Row& operator[](std::size_t i) const;  // throws invalid_argument when out of range
  auto begin() const noexcept { return rows_.begin(); }
  auto end() const noexcept { return rows_.end(); }
  std::uint64_t affected_rows() const noexcept { return affected_; }
  // The column's position by name; throws invalid_argument naming the column if absent.
  std::size_t column_index(std::string_view name) const;

 private:
  std::vector<std::string> columns_;
  std::vector<Row> rows_;
  std::uint64_t affected_ = 0;
};

}  // namespace reservoir
