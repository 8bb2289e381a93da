// src/async/async_acquire.cpp: the asynchronous acquire. It drives the engine's slow-path state
// machine (Engine::next_step, shared with the synchronous acquire) from a coroutine: waiting is
// a suspension in the engine's one FIFO queue, connects use the driver's non-blocking path or
// the worker pool.
#include <asio/experimental/concurrent_channel.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <asio/use_awaitable.hpp>
#include <mutex>

#include "async/drive.hpp"
#include "async/pool_access.hpp"
#include "async/worker_pool.hpp"
#include "reservoir/async.hpp"
#include "reservoir/error.hpp"

namespace reservoir {

namespace {

using core::Engine;
using core::Slot;
// Capacity 1: a wake-up that arrives before the coroutine waits is kept; more are one wake-up.
// (The int is a dummy: Asio 1.22 cannot instantiate a channel of void(error_code) alone.)
using WakeChannel = asio::experimental::concurrent_channel<void(asio::error_code, int)>;

// How a waiting coroutine is woken: by the engine (a release, a freed place, close) through the
// channel, or by its own timer at the step's wake_at, which sends to the same channel. One wait
// is then one receive, with no timer armed per wait. Shared with the timer's handler, which may
// run after the coroutine is gone.
struct WaitState {
  explicit WaitState(const asio::any_io_executor& ex) : wake(ex, 1), timer(ex) {}
  WakeChannel wake;
  asio::steady_timer timer;
  Engine::RealClock::time_point armed = Engine::RealClock::time_point::max();

  // Makes the timer wake the channel at `at` (no-op if it already does).
  static void arm(const std::shared_ptr<WaitState>& self, Engine::RealClock::time_point at) {
    if (at == self->armed) return;
    self->armed = at;
    if (at == Engine::RealClock::time_point::max()) {
      self->timer.cancel();
      return;
    }
    self->timer.expires_at(at);  // cancels a pending wait (its handler sees operation_aborted)
    self->timer.async_wait([weak = std::weak_ptr<WaitState>(self)](asio::error_code ec) {
      if (ec) return;
      if (auto s = weak.lock()) s->wake.try_send(asio::error_code{}, 0);
    });
  }
};

// Whether the coroutine was cancelled.
asio::awaitable<bool> cancelled() {
  asio::cancellation_state cs = co_await asio::this_coro::cancellation_state;
  co_return cs.cancelled() != asio::cancellation_type::none;
}

// Throws if the coroutine was cancelled while it was busy with something that could not be
// interrupted (a call on the worker pool).
asio::awaitable<void> throw_if_cancelled() {
  // Not `if (co_await ...)`: GCC 12 miscompiles a co_await in a condition (SIGILL).
  const bool gave_up = co_await cancelled();
  if (gave_up) throw asio::system_error(asio::error::operation_aborted);
}

// Opens the connection of a slot reserved for this acquirer: the driver's ConnectOp on this
// executor, else the blocking connect on the worker pool. Hands the outcome to the engine
// (adopt_connection), which throws the driver's error after its accounting.
asio::awaitable<void> open_reserved(Engine& e, Slot& slot, const Engine::AcquireRun& run,
                                    Slot*& connecting) {
  const Dsn dsn = e.custom_user(run.r) ? e.dsn_for(run.r) : e.dsn();
  const auto timeout = e.connect_timeout(run.deadline);
  std::unique_ptr<Connection> conn;
  std::exception_ptr error;
  try {
    std::unique_ptr<ConnectOp> op = e.driver().start_connect(dsn, timeout);
    if (op) {
      co_await async::drive(*op);
      conn = op->take();
    } else {
      // Runs to its end even if cancelled meanwhile: the caller then gives the new connection
      // to the pool (it checks for cancellation right after).
      conn = co_await async::on_worker([&] { return e.driver().connect(dsn, timeout); });
    }
  } catch (...) {
    error = std::current_exception();
  }
  // Cancelled: the caller frees the slot (connecting still points at it), and no failure is
  // recorded. Anything else is a failed connect.
  bool gave_up = false;
  if (error) gave_up = co_await cancelled();  // not in a condition: see throw_if_cancelled
  if (gave_up) throw asio::system_error(asio::error::operation_aborted);
  connecting = nullptr;  // adopt_connection owns the slot's fate from here
  e.adopt_connection(slot, run.r, std::move(conn), error, core::SlotState::in_use);
}

// Leaves the queue and gives back what this acquire holds when it ends without a lease: an
// error, a cancellation, or the coroutine destroyed while suspended.
struct RunGuard {
  Engine& e;
  Engine::AcquireRun& run;
  Slot* owned = nullptr;       // taken or handed, being checked
  Slot* connecting = nullptr;  // reserved for a connect still in flight
  bool done = false;
  ~RunGuard() {
    if (done) return;
    if (connecting != nullptr) e.cancel_reserved(*connecting);
    e.abandon_run(run, owned);
  }
};

}  // namespace

asio::awaitable<Lease> async_acquire(Pool& pool, AcquireOptions options,
                                     std::source_location where) {
  // The engine stays alive while this coroutine may touch it, even if the Pool goes.
  const std::shared_ptr<Engine> engine = PoolAccess::engine(pool);
  Engine& e = *engine;
  Engine::Request r;
  GetMode mode = GetMode::wait;
  std::chrono::milliseconds timeout{0};
  if (Lease lease = e.acquire_begin(options, where, r, mode, timeout); lease) co_return lease;

  auto ex = co_await asio::this_coro::executor;
  const auto waits = std::make_shared<WaitState>(ex);
  Engine::AcquireRun run;
  e.begin_run(run, r, mode, timeout);
  run.w.context = &waits->wake;
  run.w.notify = [](core::Waiter& w) noexcept {
    // Under the engine's mutex: try_send only posts the coroutine's resumption.
    static_cast<WakeChannel*>(w.context)->try_send(asio::error_code{}, 0);
  };
  RunGuard guard{e, run};

  std::unique_lock lk(e.mutex());
  for (;;) {
    Engine::Step step;
    try {
      step = e.next_step(run);  // throws with the waiter out of the queue
    } catch (...) {
      guard.done = true;
      throw;
    }
    switch (step.kind) {
      case Engine::StepKind::check: {
        guard.owned = step.slot;
        lk.unlock();
        bool ok;
        try {
          if (!step.fresh && e.ready_without_io(*step.slot, run.r, e.now())) {
            ok = true;
          } else if (step.fresh && !e.has_session_callback()) {
            ok = e.prepare(*step.slot, run.r, e.now(), true);  // no I/O: class bookkeeping only
          } else {
            // A ping, a purity reset or the session callback: blocking calls.
            ok = co_await async::on_worker(
                [&] { return e.prepare(*step.slot, run.r, e.now(), step.fresh); });
          }
        } catch (...) {
          // prepare() closed the slot (and the session callback's exception propagates).
          guard.owned = nullptr;
          lk.lock();
          e.fail_step(run);
          guard.done = true;
          throw;
        }
        // A false prepare() closed or returned the slot: it is no longer ours.
        if (!ok) guard.owned = nullptr;
        co_await throw_if_cancelled();  // with the slot still ours, the guard gives it back
        lk.lock();
        if (e.end_check(run, ok)) {
          lk.unlock();
          guard.owned = nullptr;
          guard.done = true;
          co_return e.finish_run(run, *step.slot, step.hit);
        }
        break;
      }
      case Engine::StepKind::connect: {
        lk.unlock();
        guard.connecting = step.slot;
        try {
          co_await open_reserved(e, *step.slot, run, guard.connecting);
        } catch (const Error& err) {
          guard.connecting = nullptr;  // adopt_connection freed it
          lk.lock();
          try {
            e.connect_failed(run, err);  // rethrows when this acquirer is done
          } catch (...) {
            guard.done = true;
            throw;
          }
          break;
        }
        // Connected: the slot is in_use and ours until it is checked.
        guard.owned = step.slot;
        co_await throw_if_cancelled();
        guard.owned = nullptr;
        lk.lock();
        run.opened = step.slot;
        break;
      }
      case Engine::StepKind::evict:
        lk.unlock();
        e.close_slot(*step.slot, CloseReason::shrink, /*refill=*/false);
        lk.lock();
        break;
      case Engine::StepKind::wait: {
        lk.unlock();
        WaitState::arm(waits, step.wake_at);
        co_await waits->wake.async_receive(asio::use_awaitable);
        lk.lock();
        break;
      }
    }
  }
}

}  // namespace reservoir
