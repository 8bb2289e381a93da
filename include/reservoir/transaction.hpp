// reservoir/transaction.hpp: a transaction as a scope. BEGIN on construction, ROLLBACK on
// destruction unless commit() or rollback() ran first.
//
//   auto tx = conn->transaction();
//   conn->execute("INSERT INTO t VALUES ($1)", 1);
//   tx.commit();
//
// Thread safety: as the Connection. Errors: commit() throws what the driver throws (the
// transaction is then finished); the destructor never throws (a failed rollback leaves the
// connection in_transaction() or broken(), and the pool discards it on release).
#pragma once

#include "reservoir/connection.hpp"

namespace reservoir {

class [[nodiscard]] Transaction {
 public:
  explicit Transaction(Connection& conn);
  ~Transaction();
  Transaction(Transaction&& other) noexcept;
  Transaction& operator=(Transaction&&) = delete;
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;

  void commit();
  void rollback();
  bool active() const noexcept { return conn_ != nullptr; }

 private:
  Connection* conn_;
};

}  // namespace reservoir
