// postgresql_io.hpp: waiting on libpq's socket with a deadline, and the few text helpers the
// driver's connection and connect code share. No libpq types here.
#pragma once

#include <chrono>
#include <string>
#include <string_view>

namespace reservoir::drivers::pg {

// Waits until fd is readable (or writable, for_write) or the deadline passes. Returns false
// only when the deadline passed; errors and hang-ups count as ready, so that libpq itself
// reports what went wrong.
bool wait_socket(int fd, bool for_write, std::chrono::steady_clock::time_point deadline) noexcept;

// libpq's multi-line messages ("...failed: FATAL:  ...\n\tThis probably means ...\n") on one
// line, without the trailing newline.
std::string one_line(std::string_view text);

// The first 200 bytes of sql for error messages, not cutting a UTF-8 character in two.
std::string shorten_sql(std::string_view sql);

}  // namespace reservoir::drivers::pg
