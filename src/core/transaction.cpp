// src/core/transaction.cpp: Transaction, a BEGIN ... COMMIT/ROLLBACK scope over a Connection.
#include "reservoir/transaction.hpp"

#include <utility>

#include "reservoir/error.hpp"

namespace reservoir {

namespace {

Connection* take(Connection*& conn, const char* what) {
  if (conn == nullptr) {
    throw Error(ErrorCode::invalid_argument,
                std::string("transaction: ") + what + "() after the transaction finished");
  }
  return std::exchange(conn, nullptr);
}

}  // namespace

Transaction::Transaction(Connection& conn) : conn_(nullptr) {
  conn.begin();
  conn_ = &conn;  // only once BEGIN succeeded: a failed BEGIN leaves nothing to roll back
}

Transaction::~Transaction() {
  if (conn_ == nullptr) return;
  Connection* conn = std::exchange(conn_, nullptr);
  // A broken link cannot roll back and might make us wait for a network timeout; the pool
  // discards the connection anyway.
  if (conn->broken()) return;
  try {
    conn->rollback();
  } catch (...) {
    // Destructors must not throw. The connection is left in_transaction() or broken(), and the
    // pool discards it on release.
  }
}

Transaction::Transaction(Transaction&& other) noexcept
    : conn_(std::exchange(other.conn_, nullptr)) {}

void Transaction::commit() {
  // Finished before the call: if COMMIT throws, its outcome is unknown or a failure, and either
  // way a ROLLBACK from the destructor would be wrong or pointless.
  take(conn_, "commit")->commit();
}

void Transaction::rollback() { take(conn_, "rollback")->rollback(); }

Transaction Connection::transaction() { return Transaction(*this); }

}  // namespace reservoir
