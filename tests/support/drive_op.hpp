// tests/support/drive_op.hpp: drives a reservoir::NonBlockingOp to completion with poll(2), the
// way the async API drives it with Asio, so that driver tests check the non-blocking paths
// without an event loop. Header-only.
#pragma once

#include <poll.h>

#include <chrono>
#include <stdexcept>

#include "reservoir/nonblocking.hpp"

namespace reservoir::test {

struct DriveResult {
  int resumes = 0;       // calls to resume(), the first included
  int waits = 0;         // times the op asked to wait on its fd
  bool abandoned = false;  // the deadline passed: abandon() was called
};

// Runs op until done, waiting for what each resume() asks. Gives up after `limit` (calls
// abandon() and returns abandoned = true). Exceptions from resume() propagate.
inline DriveResult drive(NonBlockingOp& op,
                         std::chrono::milliseconds limit = std::chrono::seconds(30)) {
  using clock = std::chrono::steady_clock;
  const auto deadline = clock::now() + limit;
  DriveResult r;
  IoWait w = op.resume(false);
  ++r.resumes;
  while (w.kind != IoWait::Kind::done) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now());
    if (left.count() <= 0) {
      op.abandon();
      r.abandoned = true;
      return r;
    }
    auto wait = left;
    if (w.timeout.count() > 0 && w.timeout < wait) wait = w.timeout;
    bool timed_out;
    if (w.kind == IoWait::Kind::timer) {
      ::poll(nullptr, 0, static_cast<int>(wait.count()));
      timed_out = true;
    } else {
      pollfd p{};
      p.fd = w.fd;
      p.events = w.kind == IoWait::Kind::read    ? POLLIN
                 : w.kind == IoWait::Kind::write ? POLLOUT
                                                 : (POLLIN | POLLOUT);
      ++r.waits;
      const int n = ::poll(&p, 1, static_cast<int>(wait.count()));
      if (n < 0) throw std::runtime_error("drive: poll failed");
      timed_out = n == 0;
    }
    w = op.resume(timed_out);
    ++r.resumes;
  }
  return r;
}

}  // namespace reservoir::test
