// tests/unit/error_test.cpp: error code names, the retry rules by code and by SQLSTATE, and what
// an Error carries.
#include "reservoir/error.hpp"

#include <gtest/gtest.h>

#include <set>
#include <string>
#include <utility>
#include <vector>

namespace reservoir {
namespace {

const std::vector<std::pair<ErrorCode, const char*>> kCodes = {
    {ErrorCode::invalid_argument, "invalid_argument"},
    {ErrorCode::pool_exhausted, "pool_exhausted"},
    {ErrorCode::pool_timeout, "pool_timeout"},
    {ErrorCode::pool_closed, "pool_closed"},
    {ErrorCode::pool_busy, "pool_busy"},
    {ErrorCode::connect_failed, "connect_failed"},
    {ErrorCode::auth_failed, "auth_failed"},
    {ErrorCode::connection_lost, "connection_lost"},
    {ErrorCode::query_failed, "query_failed"},
    {ErrorCode::type_mismatch, "type_mismatch"},
    {ErrorCode::lease_invalid, "lease_invalid"},
    {ErrorCode::unsupported, "unsupported"},
    {ErrorCode::internal, "internal"},
};

TEST(ErrorTest, CodeNames) {
  std::set<std::string> seen;
  for (const auto& [code, name] : kCodes) {
    EXPECT_STREQ(to_string(code), name);
    seen.insert(to_string(code));
  }
  EXPECT_EQ(seen.size(), kCodes.size());
  EXPECT_STREQ(to_string(static_cast<ErrorCode>(200)), "unknown");
}

TEST(ErrorTest, CodeValuesAreStable) {
  // Codes are part of the wire protocol and of logs: their numbers must never change.
  EXPECT_EQ(static_cast<int>(ErrorCode::invalid_argument), 0);
  EXPECT_EQ(static_cast<int>(ErrorCode::pool_timeout), 2);
  EXPECT_EQ(static_cast<int>(ErrorCode::query_failed), 8);
  EXPECT_EQ(static_cast<int>(ErrorCode::internal), 12);
}

TEST(ErrorTest, RetryableByCode) {
  const std::set<ErrorCode> retryable = {ErrorCode::pool_exhausted, ErrorCode::pool_timeout,
                                         ErrorCode::connect_failed, ErrorCode::connection_lost};
  for (const auto& [code, name] : kCodes) {
    EXPECT_EQ(is_retryable(code), retryable.count(code) == 1) << name;
    EXPECT_EQ(Error(code, "x").retryable(), retryable.count(code) == 1) << name;
  }
  EXPECT_FALSE(is_retryable(static_cast<ErrorCode>(200)));
}

TEST(ErrorTest, Carries) {
  const Error e(ErrorCode::query_failed, "relation \"t\" does not exist", {"42P01", 7});
  EXPECT_EQ(e.code(), ErrorCode::query_failed);
  EXPECT_STREQ(e.what(), "relation \"t\" does not exist");
  EXPECT_EQ(e.sqlstate(), "42P01");
  EXPECT_EQ(e.native_code(), 7);

  const Error plain(ErrorCode::pool_closed, "closed");
  EXPECT_EQ(plain.sqlstate(), "");
  EXPECT_EQ(plain.native_code(), 0);

  // Usable as a std::runtime_error, and copyable.
  try {
    throw e;
  } catch (const std::runtime_error& r) {
    EXPECT_STREQ(r.what(), "relation \"t\" does not exist");
  }
  const Error copy = e;  // NOLINT(performance-unnecessary-copy-initialization)
  EXPECT_EQ(copy.code(), e.code());
  EXPECT_EQ(copy.sqlstate(), e.sqlstate());
  EXPECT_STREQ(copy.what(), e.what());
}

bool retryable_with(ErrorCode code, const char* sqlstate) {
  return Error(code, "x", {sqlstate, 0}).retryable();
}

TEST(ErrorTest, RetryableBySqlstate) {
  // Class 40: transaction rollback (serialization failure, deadlock).
  EXPECT_TRUE(retryable_with(ErrorCode::query_failed, "40001"));
  EXPECT_TRUE(retryable_with(ErrorCode::query_failed, "40P01"));
  EXPECT_TRUE(retryable_with(ErrorCode::query_failed, "40000"));
  // Class 08: connection exception.
  EXPECT_TRUE(retryable_with(ErrorCode::query_failed, "08006"));
  EXPECT_TRUE(retryable_with(ErrorCode::query_failed, "08001"));
  EXPECT_TRUE(retryable_with(ErrorCode::auth_failed, "08004"));
  // PostgreSQL shutting down or starting up.
  EXPECT_TRUE(retryable_with(ErrorCode::query_failed, "57P01"));
  EXPECT_TRUE(retryable_with(ErrorCode::query_failed, "57P02"));
  EXPECT_TRUE(retryable_with(ErrorCode::query_failed, "57P03"));
  // The SQLSTATE counts even when the code alone would say no.
  EXPECT_TRUE(retryable_with(ErrorCode::internal, "40001"));
}

TEST(ErrorTest, NotRetryableBySqlstate) {
  EXPECT_FALSE(retryable_with(ErrorCode::query_failed, ""));
  EXPECT_FALSE(retryable_with(ErrorCode::query_failed, "4"));
  EXPECT_FALSE(retryable_with(ErrorCode::query_failed, "0"));
  EXPECT_FALSE(retryable_with(ErrorCode::query_failed, "23505"));  // unique violation
  EXPECT_FALSE(retryable_with(ErrorCode::query_failed, "42601"));  // syntax error
  EXPECT_FALSE(retryable_with(ErrorCode::query_failed, "57014"));  // query canceled
  EXPECT_FALSE(retryable_with(ErrorCode::query_failed, "57P04"));  // database dropped
  EXPECT_FALSE(retryable_with(ErrorCode::auth_failed, "28P01"));   // bad password
  EXPECT_FALSE(retryable_with(ErrorCode::query_failed, "04001"));  // '40' must be the class
  EXPECT_FALSE(retryable_with(ErrorCode::query_failed, "80001"));
  // Retryable codes stay retryable whatever the SQLSTATE.
  EXPECT_TRUE(retryable_with(ErrorCode::connection_lost, "42601"));
}

}  // namespace
}  // namespace reservoir
