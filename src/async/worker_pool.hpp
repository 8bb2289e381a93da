// src/async/worker_pool.hpp: the bounded pool of threads on which the async API runs blocking
// calls (drivers without a non-blocking path, ping, reset, session callbacks), resuming the
// coroutine on its own executor afterwards.
#pragma once

#include <asio/awaitable.hpp>
#include <asio/co_spawn.hpp>
#include <asio/thread_pool.hpp>
#include <asio/use_awaitable.hpp>
#include <cstdint>
#include <type_traits>
#include <utility>

namespace reservoir::async {

// The process's worker pool, started on first use with async_worker_threads() threads.
asio::thread_pool& worker_pool();

// Runs f() on the worker pool and returns (or throws) what it returned (threw), back on the
// calling coroutine's executor. f runs to its end even if the coroutine is cancelled meanwhile.
template <class F>
asio::awaitable<std::invoke_result_t<F&>> on_worker(F f) {
  using R = std::invoke_result_t<F&>;
  co_return co_await asio::co_spawn(
      worker_pool().get_executor(), [&f]() -> asio::awaitable<R> { co_return f(); },
      asio::use_awaitable);
}

}  // namespace reservoir::async
