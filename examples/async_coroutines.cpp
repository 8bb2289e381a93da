// examples/async_coroutines.cpp: 10,000 coroutines on one thread share 16 PostgreSQL
// connections through reservoir's async API. Each coroutine borrows a connection, runs a few
// queries and a transaction (an INSERT into the table async_example_visits, which it creates),
// and gives it back; waiting for a connection costs no thread.
//
//   async_coroutines --dsn postgresql://app:secret@127.0.0.1:5432/shop
//   async_coroutines --coroutines 10000 --connections 16 --rounds 3   (DSN from RESERVOIR_PG_DSN)
//
// Exits non-zero if any coroutine failed.
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <string>

#include "reservoir/async.hpp"
#include "reservoir/reservoir.hpp"

namespace {

struct Totals {
  std::uint64_t done = 0, failed = 0, queries = 0;
};

// One client: `rounds` times, borrow a connection, ask the database something, check the
// answer, and once write in a transaction.
asio::awaitable<void> client(reservoir::Pool& pool, std::int64_t id, int rounds, Totals& t) {
  try {
    for (int r = 0; r < rounds; ++r) {
      reservoir::Lease c = co_await pool.async_acquire();
      reservoir::ResultSet rows = co_await reservoir::async_query(*c, "SELECT $1::bigint * 2", id);
      if (rows[0][0].as<std::int64_t>() != id * 2) throw std::runtime_error("wrong answer");
      ++t.queries;
      if (r == 0) {
        auto tx = co_await reservoir::AsyncTransaction::begin(*c);
        co_await reservoir::async_execute(
            *c, "INSERT INTO async_example_visits(client) VALUES ($1)", id);
        co_await tx.commit();
        t.queries += 3;
      }
    }
    ++t.done;
  } catch (const std::exception& e) {
    if (t.failed++ < 5) std::cerr << "client " << id << ": " << e.what() << "\n";
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string dsn = std::getenv("RESERVOIR_PG_DSN") ? std::getenv("RESERVOIR_PG_DSN") : "";
  std::int64_t coroutines = 10'000;
  std::uint32_t connections = 16;
  int rounds = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i], v = argv[i + 1];
    if (k == "--dsn") {
      dsn = v;
    } else if (k == "--coroutines") {
      coroutines = std::stoll(v);
    } else if (k == "--connections") {
      connections = static_cast<std::uint32_t>(std::stoul(v));
    } else if (k == "--rounds") {
      rounds = std::stoi(v);
    } else {
      std::cerr << "unknown option " << k << "\n";
      return 2;
    }
  }
  if (dsn.empty()) {
    std::cerr << "usage: async_coroutines --dsn postgresql://user:pass@host:port/db "
                 "[--coroutines N] [--connections N] [--rounds N]\n";
    return 2;
  }

  asio::io_context io(1);  // everything below runs on this one thread
  Totals t;
  std::shared_ptr<reservoir::Pool> pool;
  const auto start = std::chrono::steady_clock::now();
  asio::co_spawn(
      io,
      [&]() -> asio::awaitable<void> {
        reservoir::PoolOptions o;
        o.dsn = dsn;
        o.min = o.max = connections;
        o.wait_timeout = std::chrono::seconds(60);
        o.fail_fast = true;
        pool = co_await reservoir::async_create_pool(o);
        {
          reservoir::Lease c = co_await pool->async_acquire();
          co_await reservoir::async_execute(
              *c, "CREATE TABLE IF NOT EXISTS async_example_visits(client bigint)");
        }
        for (std::int64_t i = 1; i <= coroutines; ++i)
          asio::co_spawn(io, client(*pool, i, rounds, t), asio::detached);
      },
      [&](std::exception_ptr e) {
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          std::cerr << "async_coroutines: " << x.what() << "\n";
          ++t.failed;
        }
      });
  io.run();
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::cout << coroutines << " coroutines on 1 thread, " << connections
            << " connections: " << t.done << " done, " << t.failed << " failed, " << t.queries
            << " statements in " << secs << " s (" << static_cast<long>(t.queries / secs)
            << "/s)\n";
  if (pool) {
    std::cout << pool->stats().to_string() << "\n";
    pool->close(true);
  }
  return t.failed == 0 && t.done == static_cast<std::uint64_t>(coroutines) ? 0 : 1;
}
