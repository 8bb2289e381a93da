// postgresql_io.cpp: poll() with a deadline on libpq's socket, and message helpers.
#include "drivers/postgresql/postgresql_io.hpp"

#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <limits>

namespace reservoir::drivers::pg {

bool wait_socket(int fd, bool for_write, std::chrono::steady_clock::time_point deadline) noexcept {
  using namespace std::chrono;
  for (;;) {
    const auto left = duration_cast<milliseconds>(deadline - steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{};
    p.fd = fd;
    p.events = for_write ? POLLOUT : POLLIN;
    // Rounded up by one so that a wait never ends just before the deadline and spins.
    const auto ms = std::min<milliseconds::rep>(left.count() + 1, std::numeric_limits<int>::max());
    const int rc = ::poll(&p, 1, static_cast<int>(ms));
    if (rc > 0) return true;
    if (rc < 0 && errno != EINTR) return true;  // let libpq find the error on its socket
  }
}

std::string one_line(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  bool space = false;
  for (const char c : text) {
    if (c == '\n' || c == '\r' || c == '\t' || c == ' ') {
      space = !out.empty();
      continue;
    }
    if (space) out += ' ';
    space = false;
    out += c;
  }
  return out;
}

std::string shorten_sql(std::string_view sql) {
  constexpr std::size_t kLimit = 200;
  if (sql.size() <= kLimit) return std::string(sql);
  std::size_t n = kLimit;
  while (n > 0 && (static_cast<unsigned char>(sql[n]) & 0xC0) == 0x80) --n;
  return std::string(sql.substr(0, n)) + "...";
}

}  // namespace reservoir::drivers::pg
