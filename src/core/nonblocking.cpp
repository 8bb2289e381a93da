// src/core/nonblocking.cpp: the defaults of the non-blocking driver interface: no non-blocking
// path, so the async API runs the blocking call on its worker pool.
#include "reservoir/nonblocking.hpp"

#include "reservoir/connection.hpp"
#include "reservoir/driver.hpp"

namespace reservoir {

std::unique_ptr<StatementOp> Connection::start_statement(std::string_view, std::span<const Value>,
                                                         bool) {
  return nullptr;
}

std::unique_ptr<ConnectOp> Driver::start_connect(const Dsn&, std::chrono::milliseconds) {
  return nullptr;
}

}  // namespace reservoir
