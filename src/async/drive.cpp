// src/async/drive.cpp: drives a NonBlockingOp with Asio (see drive.hpp).
#include "async/drive.hpp"

#include <asio/experimental/awaitable_operators.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <chrono>

namespace reservoir::async {

using namespace asio::experimental::awaitable_operators;

namespace {

// Rethrows the first exception inside (nested) multiple_exceptions.
[[noreturn]] void rethrow_first(std::exception_ptr p) {
  for (;;) {
    try {
      std::rethrow_exception(p);
    } catch (const asio::multiple_exceptions& m) {
      p = m.first_exception();
    }
  }
}

}  // namespace

asio::awaitable<void> drive(NonBlockingOp& op) {
  auto ex = co_await asio::this_coro::executor;
  // The descriptor only watches the driver's socket: release(), never close(), on the way out.
  asio::posix::stream_descriptor sd(ex);
  asio::steady_timer timer(ex);
  struct Guard {
    NonBlockingOp& op;
    asio::posix::stream_descriptor& sd;
    bool done = false;
    ~Guard() {
      if (sd.is_open()) sd.release();
      if (!done) op.abandon();
    }
  } guard{op, sd};

  // Once resume() threw, the operation is over: nothing to abandon.
  const auto resume = [&](bool timed_out) {
    try {
      return op.resume(timed_out);
    } catch (...) {
      guard.done = true;
      throw;
    }
  };
  IoWait w = resume(false);
  while (w.kind != IoWait::Kind::done) {
    // Cancelled, both branches of an `a || b` wait end with operation_aborted, which Asio
    // reports as multiple_exceptions: rethrow the first, the cancellation, as such.
    try {
      bool timed_out = false;
      const bool timed = w.timeout.count() > 0;
      if (timed) timer.expires_after(w.timeout);
      if (w.kind == IoWait::Kind::timer) {
        co_await timer.async_wait(asio::use_awaitable);
        timed_out = true;
      } else {
        // The socket may change between waits (libpq trying the next host).
        if (!sd.is_open() || sd.native_handle() != w.fd) {
          if (sd.is_open()) sd.release();
          sd.assign(w.fd);
        }
        const auto on = [&](asio::posix::descriptor_base::wait_type t) {
          return sd.async_wait(t, asio::use_awaitable);
        };
        using W = asio::posix::descriptor_base;
        if (w.kind == IoWait::Kind::read_write) {
          if (timed) {
            auto r = co_await ((on(W::wait_read) || on(W::wait_write)) ||
                               timer.async_wait(asio::use_awaitable));
            timed_out = r.index() == 1;
          } else {
            co_await (on(W::wait_read) || on(W::wait_write));
          }
        } else {
          const auto t = w.kind == IoWait::Kind::read ? W::wait_read : W::wait_write;
          if (timed) {
            auto r = co_await (on(t) || timer.async_wait(asio::use_awaitable));
            timed_out = r.index() == 1;
          } else {
            co_await on(t);
          }
        }
      }
      w = resume(timed_out);
    } catch (const asio::multiple_exceptions& e) {
      rethrow_first(e.first_exception());
    }
  }
  guard.done = true;
}

}  // namespace reservoir::async
