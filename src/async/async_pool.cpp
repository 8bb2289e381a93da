// src/async/async_pool.cpp: pool creation on the worker pool, maintenance on the application's
// executor, and the worker pool itself.
#include <algorithm>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/steady_timer.hpp>
#include <asio/this_coro.hpp>
#include <atomic>
#include <thread>

#include "async/worker_pool.hpp"
#include "reservoir/async.hpp"

namespace reservoir {

namespace {

std::atomic<std::uint32_t> g_worker_threads{0};

// Not the number of cores: the calls that run here mostly wait (for a lock, the disk, the
// network), and a connection waiting for a lock must not take the thread its holder needs.
std::uint32_t default_workers() noexcept {
  return std::max<std::uint32_t>(16, 2 * std::thread::hardware_concurrency());
}

asio::awaitable<void> maintain(std::weak_ptr<Pool> weak, std::chrono::milliseconds interval) {
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    timer.expires_after(interval);
    co_await timer.async_wait(asio::use_awaitable);
    std::shared_ptr<Pool> pool = weak.lock();
    if (!pool || pool->closed()) co_return;
    pool->run_maintenance();
  }
}

}  // namespace

namespace async {

asio::thread_pool& worker_pool() {
  // Started on first use; joined at exit after the calls still running there have ended.
  static asio::thread_pool pool([] {
    std::uint32_t n = g_worker_threads.load();
    if (n == 0) {
      n = default_workers();
      g_worker_threads.store(n);
    }
    return n;
  }());
  return pool;
}

}  // namespace async

std::uint32_t async_worker_threads(std::uint32_t threads) {
  std::uint32_t expected = 0;
  if (threads != 0) g_worker_threads.compare_exchange_strong(expected, threads);
  async::worker_pool();  // fixes the size
  return g_worker_threads.load();
}

asio::awaitable<std::shared_ptr<Pool>> async_create_pool(PoolOptions options) {
  co_return co_await async::on_worker([&] { return Pool::create(options); });
}

void async_maintain(asio::any_io_executor executor, const std::shared_ptr<Pool>& pool) {
  asio::co_spawn(executor, maintain(pool, pool->options().maintenance_interval), asio::detached);
}

}  // namespace reservoir
