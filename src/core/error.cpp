// src/core/error.cpp: reservoir::Error, the names of the error codes and the retry rules (by code
// and by SQLSTATE).
#include "reservoir/error.hpp"

#include <algorithm>

#include <utility>

namespace reservoir {

const char* to_string(ErrorCode code) noexcept {
  switch (code) {
    case ErrorCode::invalid_argument:
      return "invalid_argument";
    case ErrorCode::pool_exhausted:
      return "pool_exhausted";
    case ErrorCode::pool_timeout:
      return "pool_timeout";
    case ErrorCode::pool_closed:
      return "pool_closed";
    case ErrorCode::pool_busy:
      return "pool_busy";
    case ErrorCode::connect_failed:
      return "connect_failed";
    case ErrorCode::auth_failed:
      return "auth_failed";
    case ErrorCode::connection_lost:
      return "connection_lost";
    case ErrorCode::query_failed:
      return "query_failed";
    case ErrorCode::type_mismatch:
      return "type_mismatch";
    case ErrorCode::lease_invalid:
      return "lease_invalid";
    case ErrorCode::unsupported:
      return "unsupported";
    case ErrorCode::internal:
      return "internal";
  }
  // Only reachable through a cast from a number that is not a code; the contract is "never null".
  return "unknown";
}

bool is_retryable(ErrorCode code) noexcept {
  switch (code) {
    // Pool pressure passes, and a database that was unreachable or dropped the link may be back.
    case ErrorCode::pool_exhausted:
    case ErrorCode::pool_timeout:
    case ErrorCode::connect_failed:
    case ErrorCode::connection_lost:
      return true;
    // The same input fails the same way (auth_failed included: retrying wrong credentials only
    // risks locking the account), and a closed pool stays closed.
    default:
      return false;
  }
}

Error::Error(ErrorCode code, const std::string& message, ErrorDetail detail)
    : std::runtime_error(message), code_(code), detail_(std::move(detail)) {}

bool Error::retryable() const noexcept {
  const std::string& state = detail_.sqlstate;
  const std::string_view cls = std::string_view(state).substr(0, std::min<std::size_t>(2, state.size()));
  // Class 28 (invalid authorization) and 3D (invalid catalog name: no such database) fail the
  // same way every time, even when the driver reports them as a failed connect.
  if (cls == "28" || cls == "3D") return false;
  if (is_retryable(code_)) return true;
  if (state.size() < 2) return false;
  // Class 40 (transaction rollback: serialization failure, deadlock): running the transaction
  // again usually succeeds. Class 08 (connection exception): the session is gone, a new one may
  // work. Whatever the code the driver chose for it, the SQLSTATE is the better witness.
  if (cls == "40" || cls == "08") return true;
  // PostgreSQL's admin_shutdown, crash_shutdown and cannot_connect_now: the server is restarting.
  return state == "57P01" || state == "57P02" || state == "57P03";
}

}  // namespace reservoir
