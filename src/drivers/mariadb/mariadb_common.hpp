// mariadb_common.hpp: what the blocking and the non-blocking MariaDB paths share: column typing,
// parameter binding, row decoding, error classification and Connector/C's wait status as IoWait.
// Internal to the driver (it includes the vendor header).
#pragma once

#include <mysql.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "reservoir/nonblocking.hpp"
#include "reservoir/value.hpp"

namespace reservoir::drivers::mariadb {

// The column types, as reservoir Values.
enum class Kind : std::uint8_t { null, integer, unsigned_integer, real, text, bytes };

Kind kind_of(const MYSQL_FIELD& f);

// The first 200 characters of sql on one line, for error messages.
std::string shorten_sql(std::string_view sql);

// Whether an error means the link is gone (or out of step for good): connection_lost.
bool is_link_failure(unsigned code, std::string_view sqlstate);

// Whether sql only reads, so that running it a second time changes nothing (see
// docs/mariadb.md, "Statement cache").
bool reads_only(std::string_view sql);

// affected rows as execute() returns them: Connector/C's (my_ulonglong)-1 is 0.
inline std::uint64_t affected_count(my_ulonglong n) {
  return n == static_cast<my_ulonglong>(-1) ? 0 : n;
}

// Throws invalid_argument unless the statement has as many placeholders as there are params.
void check_param_count(MYSQL_STMT* stmt, std::size_t params, std::string_view sql);
// Throws unsupported: a statement the prepared protocol refuses cannot take parameters.
[[noreturn]] void throw_unpreparable_with_params(std::string_view sql);

// The MYSQL_BIND array for a statement's parameters and the buffers it points into. The Values
// (their strings) must outlive the execution; bind() may be called once.
class ParamBinds {
 public:
  void bind(std::span<const Value> params);
  bool empty() const noexcept { return binds_.empty(); }
  MYSQL_BIND* data() noexcept { return binds_.data(); }

 private:
  std::vector<MYSQL_BIND> binds_;
  std::vector<long long> ints_;
  std::vector<double> reals_;
  std::vector<signed char> bools_;
  std::vector<unsigned long> lengths_;
  std::vector<Bytes> blobs_;
};

// Decodes the rows of a prepared statement's result into Values: numbers land in fixed buffers;
// strings are measured first (a zero-length buffer), then fetched column by column at their size.
class RowDecoder {
 public:
  // Binds the result buffers for meta's columns. False when Connector/C refuses (the error is
  // on stmt).
  bool bind(MYSQL_STMT* stmt, MYSQL_RES* meta);
  // After a successful mysql_stmt_fetch: appends the current row. False when a column cannot be
  // read (the error is on stmt).
  bool read(MYSQL_STMT* stmt, std::vector<Row>& rows);
  std::vector<std::string> take_names() { return std::move(names_); }

 private:
  std::vector<std::string> names_;
  std::vector<Kind> kinds_;
  std::vector<MYSQL_BIND> result_;
  std::vector<long long> int_out_;
  std::vector<double> real_out_;
  std::vector<unsigned long> length_out_;
  std::vector<my_bool> null_out_;
  std::vector<my_bool> error_out_;
};

// The rows of a stored text-protocol result, typed by column.
ResultSet decode_text_result(MYSQL_RES* res);

// --- The non-blocking API ----------------------------------------------------------------------

// The wait a suspended non-blocking call asked for (Connector/C's status: MYSQL_WAIT_READ /
// _WRITE / _EXCEPT / _TIMEOUT bits), as an IoWait, and what to hand back to its _cont call.
class PendingWait {
 public:
  bool pending() const noexcept { return status_ != 0; }
  int status() const noexcept { return status_; }
  // Records the status a _start / _cont call returned. When it has MYSQL_WAIT_TIMEOUT, its
  // timeout (mysql_get_timeout_value_ms) counts from now.
  void set(MYSQL* mysql, int status);
  int take() noexcept { return std::exchange(status_, 0); }

  // What to wait for: the socket's conditions, and the time left of Connector/C's timeout.
  IoWait io_wait(MYSQL* mysql) const;

  // The status for the _cont call after the wait ended: MYSQL_WAIT_TIMEOUT when it timed out
  // and Connector/C's own timeout has passed; the fd conditions waited for when it did not time
  // out (Connector/C retries the I/O itself and asks again if it would still block); -1 when it
  // timed out before Connector/C's timeout did (the caller's shorter wait: nothing to continue,
  // wait again).
  int ready(bool timed_out) const;

 private:
  int status_ = 0;
  std::chrono::steady_clock::time_point timeout_at_{};
};

// Gives up an exchange in progress on mysql: shuts the socket down so that the pending and every
// later I/O fails at once, then lets the suspended call run to its (failed) end through cont,
// a few steps at most. status: the pending call's last status (0: none pending).
template <class Cont>
void abort_exchange(MYSQL* mysql, int status, Cont&& cont) noexcept;

void shutdown_socket(MYSQL* mysql) noexcept;

template <class Cont>
void abort_exchange(MYSQL* mysql, int status, Cont&& cont) noexcept {
  shutdown_socket(mysql);
  // Each step returns at once (the socket is shut down); the bound only guards against a
  // Connector/C that kept asking for more.
  for (int i = 0; status != 0 && i < 64; ++i) {
    status = cont((status & MYSQL_WAIT_TIMEOUT) != 0 && (status & ~MYSQL_WAIT_TIMEOUT) == 0
                      ? MYSQL_WAIT_TIMEOUT
                      : status & ~MYSQL_WAIT_TIMEOUT);
  }
}

}  // namespace reservoir::drivers::mariadb
