// tests/unit/value_test.cpp: Value construction, conversions (with their type_mismatch errors),
// NULL handling and rendering; bounds-checked Row and ResultSet access.
#include "reservoir/value.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace reservoir {
namespace {

using ::testing::HasSubstr;

Bytes bytes(std::initializer_list<unsigned> v) {
  Bytes out;
  for (unsigned x : v) out.push_back(static_cast<std::byte>(x));
  return out;
}

// The message of the type_mismatch Error that f throws; fails the test otherwise.
template <class F>
std::string mismatch_of(F f) {
  try {
    f();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::type_mismatch);
    return e.what();
  }
  ADD_FAILURE() << "no type_mismatch thrown";
  return {};
}

template <class T>
void expect_mismatch(const Value& v) {
  EXPECT_NE(mismatch_of([&] { (void)v.as<T>(); }), "") << v.to_string();
}

TEST(ValueTest, TypesOfConstructedValues) {
  EXPECT_EQ(Value().type(), ValueType::null);
  EXPECT_EQ(Value(nullptr).type(), ValueType::null);
  EXPECT_EQ(Value(std::nullopt).type(), ValueType::null);
  EXPECT_EQ(Value(true).type(), ValueType::boolean);
  EXPECT_EQ(Value(42).type(), ValueType::integer);
  EXPECT_EQ(Value(std::int8_t{-1}).type(), ValueType::integer);
  EXPECT_EQ(Value(std::uint16_t{7}).type(), ValueType::integer);
  EXPECT_EQ(Value(42L).type(), ValueType::integer);
  EXPECT_EQ(Value(1.5f).type(), ValueType::real);
  EXPECT_EQ(Value(1.5).type(), ValueType::real);
  EXPECT_EQ(Value("abc").type(), ValueType::text);
  EXPECT_EQ(Value(std::string_view("abc")).type(), ValueType::text);
  EXPECT_EQ(Value(std::string("abc")).type(), ValueType::text);
  EXPECT_EQ(Value(bytes({1, 2})).type(), ValueType::bytes);
  EXPECT_EQ(Value(std::optional<int>(3)).type(), ValueType::integer);
  EXPECT_EQ(Value(std::optional<int>()).type(), ValueType::null);
  EXPECT_EQ(Value(std::optional<std::string>("x")).type(), ValueType::text);

  EXPECT_TRUE(Value().is_null());
  EXPECT_FALSE(Value(0).is_null());
  EXPECT_FALSE(Value("").is_null());
}

TEST(ValueTest, TypeNames) {
  EXPECT_STREQ(to_string(ValueType::null), "null");
  EXPECT_STREQ(to_string(ValueType::boolean), "boolean");
  EXPECT_STREQ(to_string(ValueType::integer), "integer");
  EXPECT_STREQ(to_string(ValueType::real), "real");
  EXPECT_STREQ(to_string(ValueType::text), "text");
  EXPECT_STREQ(to_string(ValueType::bytes), "bytes");
  EXPECT_STREQ(to_string(static_cast<ValueType>(99)), "unknown");
}

TEST(ValueTest, Equality) {
  EXPECT_EQ(Value(1), Value(1L));
  EXPECT_NE(Value(1), Value(2));
  EXPECT_NE(Value(1), Value(1.0));  // different types
  EXPECT_NE(Value(1), Value(true));
  EXPECT_EQ(Value(), Value(nullptr));
  EXPECT_EQ(Value("a"), Value(std::string("a")));
  EXPECT_EQ(Value(bytes({1})), Value(bytes({1})));
}

TEST(ValueTest, Integers) {
  EXPECT_EQ(Value(42).as<std::int64_t>(), 42);
  EXPECT_EQ(Value(42).as<int>(), 42);
  EXPECT_EQ(Value(-42).as<short>(), -42);
  EXPECT_EQ(Value(200).as<std::uint8_t>(), 200);
  EXPECT_EQ(Value(std::numeric_limits<std::int64_t>::max()).as<std::uint64_t>(),
            static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()));
  EXPECT_EQ(Value(std::numeric_limits<std::int64_t>::min()).as<std::int64_t>(),
            std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(Value(std::numeric_limits<std::int32_t>::min()).as<std::int32_t>(),
            std::numeric_limits<std::int32_t>::min());
  EXPECT_EQ(Value(std::numeric_limits<std::int32_t>::max()).as<std::int32_t>(),
            std::numeric_limits<std::int32_t>::max());
  EXPECT_EQ(Value(0).as<unsigned>(), 0u);
}

TEST(ValueTest, NarrowingOverflowIsAMismatch) {
  expect_mismatch<std::int8_t>(Value(128));
  expect_mismatch<std::int8_t>(Value(-129));
  expect_mismatch<std::uint8_t>(Value(256));
  expect_mismatch<std::uint8_t>(Value(-1));
  expect_mismatch<unsigned>(Value(-1));
  expect_mismatch<std::uint64_t>(Value(-1));
  expect_mismatch<std::int32_t>(Value(std::int64_t{std::numeric_limits<std::int32_t>::max()} + 1));
  expect_mismatch<std::int32_t>(Value(std::int64_t{std::numeric_limits<std::int32_t>::min()} - 1));
  EXPECT_EQ(mismatch_of([] { (void)Value(300).as<std::int8_t>(); }),
            "value is integer 300, wanted a narrower integer");
}

TEST(ValueTest, UnsignedAboveInt64MaxThrowsInsteadOfWrapping) {
  constexpr auto kMax = static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max());
  EXPECT_EQ(Value(std::uint64_t{42}).as<std::int64_t>(), 42);
  EXPECT_EQ(Value(kMax).as<std::uint64_t>(), kMax);
  EXPECT_EQ(Value(42UL).type(), ValueType::integer);
  EXPECT_EQ(Value(42ULL).type(), ValueType::integer);
  try {
    (void)Value(std::uint64_t{1} << 63);
    ADD_FAILURE() << "expected Error{invalid_argument}";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
    EXPECT_STREQ(e.what(),
                 "unsigned value 9223372036854775808 does not fit a signed 64-bit integer; pass "
                 "it as text");
  }
  EXPECT_THROW((void)Value(std::numeric_limits<std::uint64_t>::max()), Error);
  EXPECT_THROW((void)Value(std::optional<std::uint64_t>(kMax + 1)), Error);
  // Narrower integers cannot overflow and keep their noexcept constructor.
  static_assert(std::is_nothrow_constructible_v<Value, std::uint32_t>);
  static_assert(std::is_nothrow_constructible_v<Value, std::int64_t>);
  static_assert(std::is_nothrow_constructible_v<Value, unsigned char>);
  static_assert(!std::is_nothrow_constructible_v<Value, std::uint64_t>);
}

TEST(ValueTest, BoolReadsAsInteger) {
  EXPECT_EQ(Value(true).as<std::int64_t>(), 1);
  EXPECT_EQ(Value(false).as<int>(), 0);
}

TEST(ValueTest, IntegralRealsReadAsIntegers) {
  EXPECT_EQ(Value(3.0).as<std::int64_t>(), 3);
  EXPECT_EQ(Value(-0.0).as<int>(), 0);
  EXPECT_EQ(Value(-9223372036854775808.0).as<std::int64_t>(),
            std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(Value(1e15).as<std::int64_t>(), 1'000'000'000'000'000);
  expect_mismatch<std::int64_t>(Value(3.5));
  expect_mismatch<std::int64_t>(Value(-0.25));
  expect_mismatch<std::int64_t>(Value(9223372036854775808.0));  // 2^63: one past the range
  expect_mismatch<std::int64_t>(Value(1e300));
  expect_mismatch<std::int64_t>(Value(std::numeric_limits<double>::infinity()));
  expect_mismatch<std::int64_t>(Value(std::nan("")));
  expect_mismatch<std::int8_t>(Value(1000.0));
  EXPECT_EQ(mismatch_of([] { (void)Value(1.5).as<int>(); }), "value is real 1.5, wanted integer");
}

TEST(ValueTest, TextAndBytesAreNotIntegers) {
  EXPECT_EQ(mismatch_of([] { (void)Value("12").as<std::int64_t>(); }),
            "value is text, wanted integer");
  expect_mismatch<int>(Value(bytes({1})));
}

TEST(ValueTest, Doubles) {
  EXPECT_DOUBLE_EQ(Value(1.5).as<double>(), 1.5);
  EXPECT_DOUBLE_EQ(Value(2).as<double>(), 2.0);
  EXPECT_FLOAT_EQ(Value(1.25).as<float>(), 1.25f);
  EXPECT_FLOAT_EQ(Value(3).as<float>(), 3.0f);
  EXPECT_TRUE(std::isinf(Value(std::numeric_limits<double>::infinity()).as<double>()));
  EXPECT_EQ(mismatch_of([] { (void)Value("1.5").as<double>(); }), "value is text, wanted real");
  expect_mismatch<double>(Value(true));
  expect_mismatch<double>(Value(bytes({})));
}

TEST(ValueTest, Booleans) {
  EXPECT_TRUE(Value(true).as<bool>());
  EXPECT_FALSE(Value(false).as<bool>());
  EXPECT_TRUE(Value(1).as<bool>());
  EXPECT_FALSE(Value(0).as<bool>());
  EXPECT_EQ(mismatch_of([] { (void)Value(2).as<bool>(); }), "value is integer 2, wanted boolean");
  expect_mismatch<bool>(Value(-1));
  expect_mismatch<bool>(Value(1.0));
  expect_mismatch<bool>(Value("true"));
  expect_mismatch<bool>(Value(bytes({1})));
}

TEST(ValueTest, Text) {
  EXPECT_EQ(Value("hello").as<std::string>(), "hello");
  const Value v(std::string("view"));
  EXPECT_EQ(v.as<std::string_view>(), "view");
  EXPECT_EQ(Value("").as<std::string>(), "");
  EXPECT_EQ(mismatch_of([] { (void)Value(42).as<std::string>(); }),
            "value is integer 42, wanted text");
  expect_mismatch<std::string_view>(Value(1.5));
  expect_mismatch<std::string>(Value(bytes({65})));
  expect_mismatch<std::string>(Value(true));
}

TEST(ValueTest, Bytes) {
  EXPECT_EQ(Value(bytes({0, 255, 10})).as<Bytes>(), bytes({0, 255, 10}));
  EXPECT_EQ(Value("AB").as<Bytes>(), bytes({65, 66}));  // text reads as its bytes
  EXPECT_EQ(mismatch_of([] { (void)Value(1).as<Bytes>(); }), "value is integer 1, wanted bytes");
  expect_mismatch<Bytes>(Value(1.0));
}

TEST(ValueTest, NullAndOptional) {
  const Value null;
  EXPECT_EQ(null.as<std::optional<int>>(), std::nullopt);
  EXPECT_EQ(null.as<std::optional<std::string>>(), std::nullopt);
  EXPECT_EQ(null.as<std::optional<double>>(), std::nullopt);
  EXPECT_EQ(null.as<std::optional<bool>>(), std::nullopt);
  EXPECT_EQ(Value(5).as<std::optional<int>>(), 5);
  EXPECT_EQ(Value("x").as<std::optional<std::string>>(), "x");
  EXPECT_EQ(Value(1).as<std::optional<bool>>(), true);
  // A present value still gets the usual checks.
  expect_mismatch<std::optional<int>>(Value("x"));
  expect_mismatch<std::optional<std::int8_t>>(Value(1000));

  const std::string msg = mismatch_of([&] { (void)null.as<int>(); });
  EXPECT_THAT(msg, HasSubstr("value is null, wanted integer"));
  EXPECT_THAT(msg, HasSubstr("std::optional"));  // tells the reader how to read a NULL
  expect_mismatch<std::string>(null);
  expect_mismatch<double>(null);
  expect_mismatch<bool>(null);
  expect_mismatch<Bytes>(null);
}

TEST(ValueTest, ToString) {
  EXPECT_EQ(Value().to_string(), "NULL");
  EXPECT_EQ(Value(true).to_string(), "true");
  EXPECT_EQ(Value(false).to_string(), "false");
  EXPECT_EQ(Value(42).to_string(), "42");
  EXPECT_EQ(Value(-7).to_string(), "-7");
  EXPECT_EQ(Value(std::numeric_limits<std::int64_t>::min()).to_string(), "-9223372036854775808");
  EXPECT_EQ(Value(1.5).to_string(), "1.5");
  EXPECT_EQ(Value(0.1).to_string(), "0.1");  // shortest round-trip form, not 0.1000000000000000055
  EXPECT_EQ(Value(2.0).to_string(), "2");
  EXPECT_EQ(Value(-0.5).to_string(), "-0.5");
  EXPECT_EQ(Value(1e300).to_string(), "1e+300");
  EXPECT_EQ(Value("hello world").to_string(), "hello world");
  EXPECT_EQ(Value(bytes({0x0a, 0x0b, 0xff})).to_string(), "\\x0a0bff");
  EXPECT_EQ(Value(bytes({})).to_string(), "\\x");
}

TEST(RowTest, Access) {
  const Row row({Value(1), Value("a")});
  EXPECT_EQ(row.size(), 2u);
  EXPECT_EQ(row[0].as<int>(), 1);
  EXPECT_EQ(row[1].as<std::string>(), "a");
  int n = 0;
  for (const Value& v : row) n += v.is_null() ? 0 : 1;
  EXPECT_EQ(n, 2);
}

TEST(RowTest, OutOfRange) {
  const Row row({Value(1), Value("a")});
  try {
    (void)row[5];
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
    EXPECT_STREQ(e.what(), "row has 2 columns, asked for column 5");
  }
  EXPECT_THROW((void)row[2], Error);
  EXPECT_THROW((void)Row()[0], Error);
}

TEST(ResultSetTest, Access) {
  const ResultSet rs({"id", "name"}, {Row({Value(1), Value("a")}), Row({Value(2), Value()})}, 7);
  EXPECT_EQ(rs.size(), 2u);
  EXPECT_FALSE(rs.empty());
  EXPECT_EQ(rs.affected_rows(), 7u);
  EXPECT_EQ(rs.columns().size(), 2u);
  EXPECT_EQ(rs[1][0].as<int>(), 2);
  EXPECT_TRUE(rs[1][1].is_null());
  std::int64_t sum = 0;
  for (const Row& r : rs) sum += r[0].as<std::int64_t>();
  EXPECT_EQ(sum, 3);

  const ResultSet empty;
  EXPECT_TRUE(empty.empty());
  EXPECT_EQ(empty.affected_rows(), 0u);
}

TEST(ResultSetTest, OutOfRange) {
  const ResultSet rs({"id"}, {Row({Value(1)})});
  try {
    (void)rs[1];
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
    EXPECT_STREQ(e.what(), "result has 1 rows, asked for row 1");
  }
  EXPECT_THROW((void)rs[0][1], Error);
}

TEST(ResultSetTest, ColumnIndex) {
  const ResultSet rs({"id", "Name", "name", "count"}, {});
  EXPECT_EQ(rs.column_index("id"), 0u);
  EXPECT_EQ(rs.column_index("Name"), 1u);
  EXPECT_EQ(rs.column_index("name"), 2u);   // an exact match wins over a case-insensitive one
  EXPECT_EQ(rs.column_index("COUNT"), 3u);  // falls back to case-insensitive
  EXPECT_EQ(rs.column_index("ID"), 0u);
  try {
    (void)rs.column_index("price");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
    EXPECT_STREQ(e.what(), "result has no column 'price' (columns: id, Name, name, count)");
  }
  EXPECT_THAT([] { (void)ResultSet().column_index("x"); },
              ::testing::ThrowsMessage<Error>(HasSubstr("(columns: none)")));
}

}  // namespace
}  // namespace reservoir
