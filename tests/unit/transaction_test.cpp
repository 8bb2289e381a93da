// tests/unit/transaction_test.cpp: Transaction begins on construction, rolls back on scope exit
// unless finished, is finished even when commit() throws, and never throws from its destructor.
#include "reservoir/transaction.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "reservoir/error.hpp"

namespace reservoir {
namespace {

// Records the calls a Transaction makes; each of begin/commit/rollback can be made to throw.
class RecordingConnection : public Connection {
 public:
  std::vector<std::string> calls;
  bool fail_begin = false;
  bool fail_commit = false;
  bool fail_rollback = false;
  bool is_broken = false;

  std::uint64_t execute_params(std::string_view sql, std::span<const Value> params) override {
    calls.push_back("execute " + std::string(sql) + " " + std::to_string(params.size()));
    return 1;
  }
  ResultSet query_params(std::string_view, std::span<const Value>) override { return {}; }
  void begin() override {
    calls.push_back("begin");
    if (fail_begin) throw Error(ErrorCode::connection_lost, "begin failed");
    open_ = true;
  }
  void commit() override {
    calls.push_back("commit");
    open_ = false;
    if (fail_commit) throw Error(ErrorCode::query_failed, "commit failed", {"40001", 0});
  }
  void rollback() override {
    calls.push_back("rollback");
    if (fail_rollback) throw Error(ErrorCode::connection_lost, "rollback failed");
    open_ = false;
  }
  bool in_transaction() const noexcept override { return open_; }
  bool broken() const noexcept override { return is_broken; }
  void ping(std::chrono::milliseconds) override {}
  void reset() override {}
  void* native_handle() noexcept override { return nullptr; }
  std::string_view driver_name() const noexcept override { return "recording"; }

 private:
  bool open_ = false;
};

using Calls = std::vector<std::string>;

TEST(TransactionTest, RollsBackAtScopeEnd) {
  RecordingConnection c;
  {
    Transaction tx(c);
    EXPECT_TRUE(tx.active());
    EXPECT_TRUE(c.in_transaction());
  }
  EXPECT_EQ(c.calls, (Calls{"begin", "rollback"}));
  EXPECT_FALSE(c.in_transaction());
}

TEST(TransactionTest, CommitFinishes) {
  RecordingConnection c;
  {
    Transaction tx(c);
    c.execute("INSERT INTO t VALUES ($1, $2)", 1, "x");
    tx.commit();
    EXPECT_FALSE(tx.active());
  }
  EXPECT_EQ(c.calls, (Calls{"begin", "execute INSERT INTO t VALUES ($1, $2) 2", "commit"}));
}

TEST(TransactionTest, ExplicitRollbackFinishes) {
  RecordingConnection c;
  {
    Transaction tx(c);
    tx.rollback();
    EXPECT_FALSE(tx.active());
  }
  EXPECT_EQ(c.calls, (Calls{"begin", "rollback"}));
}

TEST(TransactionTest, FailedCommitStillFinishes) {
  RecordingConnection c;
  c.fail_commit = true;
  {
    Transaction tx(c);
    try {
      tx.commit();
      FAIL() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::query_failed);  // the driver's error, unchanged
      EXPECT_EQ(e.sqlstate(), "40001");
    }
    EXPECT_FALSE(tx.active());
  }
  EXPECT_EQ(c.calls, (Calls{"begin", "commit"}));  // no ROLLBACK after the failed COMMIT
}

TEST(TransactionTest, FailedRollbackStillFinishes) {
  RecordingConnection c;
  c.fail_rollback = true;
  Transaction tx(c);
  EXPECT_THROW(tx.rollback(), Error);
  EXPECT_FALSE(tx.active());
}

TEST(TransactionTest, FinishingTwiceIsAnError) {
  RecordingConnection c;
  Transaction tx(c);
  tx.commit();
  for (int i = 0; i < 2; ++i) {
    try {
      i == 0 ? tx.commit() : tx.rollback();
      FAIL() << "no error";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
      EXPECT_NE(std::string(e.what()).find("after the transaction finished"), std::string::npos);
    }
  }
  EXPECT_EQ(c.calls, (Calls{"begin", "commit"}));
}

TEST(TransactionTest, DestructorSwallowsRollbackErrors) {
  RecordingConnection c;
  c.fail_rollback = true;
  EXPECT_NO_THROW({ Transaction tx(c); });
  EXPECT_EQ(c.calls, (Calls{"begin", "rollback"}));
  EXPECT_TRUE(c.in_transaction());  // left for the pool to discard
}

TEST(TransactionTest, DestructorSkipsRollbackOnABrokenConnection) {
  RecordingConnection c;
  {
    Transaction tx(c);
    c.is_broken = true;
  }
  EXPECT_EQ(c.calls, (Calls{"begin"}));
}

TEST(TransactionTest, FailedBeginThrowsAndRollsNothingBack) {
  RecordingConnection c;
  c.fail_begin = true;
  try {
    Transaction tx(c);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::connection_lost);
  }
  EXPECT_EQ(c.calls, (Calls{"begin"}));
}

TEST(TransactionTest, MoveTransfersTheDuty) {
  RecordingConnection c;
  {
    Transaction a(c);
    Transaction b(std::move(a));
    EXPECT_FALSE(a.active());  // NOLINT(bugprone-use-after-move): checking the moved-from state
    EXPECT_TRUE(b.active());
    b.commit();
  }
  EXPECT_EQ(c.calls, (Calls{"begin", "commit"}));
}

TEST(TransactionTest, ConnectionTransaction) {
  RecordingConnection c;
  {
    auto tx = c.transaction();
    EXPECT_TRUE(tx.active());
    EXPECT_EQ(c.calls, (Calls{"begin"}));
  }
  EXPECT_EQ(c.calls, (Calls{"begin", "rollback"}));
}

}  // namespace
}  // namespace reservoir
