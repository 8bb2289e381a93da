// reservoir/error.hpp: the one exception type of reservoir, with a stable code, the database's
// SQLSTATE or native code, and retry guidance.
//
//   try { auto c = pool->acquire(); ... }
//   catch (const reservoir::Error& e) {
//     if (e.code() == reservoir::ErrorCode::pool_timeout && e.retryable()) { /* back off */ }
//     log(e.what());                      // a message a person can act on; never a password
//   }
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace reservoir {

// Stable error codes. Values never change meaning; new codes are only appended.
enum class ErrorCode : std::uint8_t {
  invalid_argument,  // bad option, malformed DSN, unknown scheme, wrong parameter count
  pool_exhausted,    // no_wait and nothing free at the cap
  pool_timeout,      // timed_wait deadline passed; message has the live counters
  pool_closed,       // the pool was closed (or the lease was revoked by close(force))
  pool_busy,         // close() without force while leases are out
  connect_failed,    // the database could not be reached or refused the session
  auth_failed,       // the database rejected the credentials
  connection_lost,   // the link to the database broke; the connection is discarded
  query_failed,      // the database rejected a statement (see sqlstate())
  type_mismatch,     // Value::as<T>() asked for a type the value does not hold
  lease_invalid,     // a moved-from, released or dropped Lease was used
  unsupported,       // the driver cannot do what was asked
  internal,          // a bug in reservoir; please report it
};

// The code's name, e.g. "pool_timeout". Never null.
const char* to_string(ErrorCode code) noexcept;

// Whether retrying may help, by code alone (connection-level trouble and pool pressure: yes;
// bad input and SQL errors: no). Error::retryable() also looks at the SQLSTATE.
bool is_retryable(ErrorCode code) noexcept;

// Extra facts about an error, all optional.
struct ErrorDetail {
  std::string sqlstate;          // five characters from the database, e.g. "3D000"; empty if none
  std::int64_t native_code = 0;  // the database's own number (MySQL errno, SQLite result code)
};

// Thrown by every reservoir call that fails. Thread-safe to copy and read.
class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message, ErrorDetail detail = {});

  ErrorCode code() const noexcept { return code_; }
  const std::string& sqlstate() const noexcept { return detail_.sqlstate; }
  std::int64_t native_code() const noexcept { return detail_.native_code; }

  // True when the same call may succeed later: pool pressure, lost or refused connections,
  // serialization failures and deadlocks (SQLSTATE class 40).
  bool retryable() const noexcept;

 private:
  ErrorCode code_;
  ErrorDetail detail_;
};

}  // namespace reservoir
