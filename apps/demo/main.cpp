// apps/demo/main.cpp: reservoir_demo, the connection-pool lab. Threads share a small pool, each
// fetching values from a database sequence, then the pool's statistics are printed.
// Usage and exit status: see usage() in cli.cpp, or docs/demo.md.
#include <chrono>
#include <cstdint>
#include <exception>
#include <filesystem>
#include <iostream>
#include <memory>
#include <mutex>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "cli.hpp"
#include "reservoir/reservoir.hpp"
#include "sequence.hpp"

namespace {

constexpr int kFetchesPerThread = 4;

constexpr int kExitOk = 0;
constexpr int kExitFailed = 1;
constexpr int kExitUsage = 2;

// Writes whole lines to stdout from many threads without interleaving them.
class Console {
 public:
  void line(const std::string& text) {
    const std::lock_guard<std::mutex> lock(mutex_);
    std::cout << text << '\n' << std::flush;
  }

 private:
  std::mutex mutex_;
};

// How one thread's run ended.
enum class Outcome : std::uint8_t {
  done,     // fetched its values
  refused,  // the pool said no (pool_timeout, pool_exhausted): expected when threads > max
  failed,   // anything else
};

Outcome run_thread(reservoir::Pool& pool, const demo::Sequence& sequence, std::uint32_t number,
                   std::chrono::milliseconds hold, Console& console) {
  const std::string name = "Thread #" + std::to_string(number);
  try {
    reservoir::Lease conn = pool.acquire();
    for (int i = 0; i < kFetchesPerThread; ++i) {
      const std::int64_t value = sequence.next(*conn);
      console.line(name + " fetched sequence = " + std::to_string(value));
    }
    // Holding the connection is what makes later threads wait when there are more than max.
    std::this_thread::sleep_for(hold);
    conn.release();
    return Outcome::done;
  } catch (const reservoir::Error& e) {
    console.line(name + " failed: " + reservoir::to_string(e.code()) + ": " + e.what());
    const bool refused = e.code() == reservoir::ErrorCode::pool_timeout ||
                         e.code() == reservoir::ErrorCode::pool_exhausted;
    return refused ? Outcome::refused : Outcome::failed;
  } catch (const std::exception& e) {
    console.line(name + " failed: " + e.what());
    return Outcome::failed;
  }
}

std::string describe(const demo::DemoOptions& o, const reservoir::Dsn& dsn) {
  std::ostringstream out;
  out << "Pool " << dsn.redacted() << ": min " << o.pool.min << ", max " << o.pool.max
      << ", increment " << o.pool.increment << ", get mode "
      << reservoir::to_string(o.pool.get_mode);
  if (o.pool.get_mode == reservoir::GetMode::timed_wait) {
    out << " (wait timeout " << o.pool.wait_timeout.count() << " ms)";
  }
  out << "\n"
      << o.threads << " thread(s), each fetching " << kFetchesPerThread
      << " values and holding its connection " << o.hold.count() << " ms";
  return out.str();
}

std::string stats_table(const reservoir::PoolStats& s) {
  std::ostringstream out;
  out << "Pool statistics\n"
      << "  connections   opened " << s.opened << "  busy " << s.busy << "  idle " << s.idle
      << "  connecting " << s.connecting << "\n"
      << "  waiters       waiting " << s.waiting << "  most at once " << s.max_waiting << "\n"
      << "  acquires      " << s.acquires << "  (hits " << s.hits << ", misses " << s.misses
      << ", waits " << s.waits << ", timeouts " << s.timeouts << ", exhausted " << s.exhausted
      << ")\n"
      << "  lifetime      created " << s.creates << ", failed to open " << s.create_failures
      << ", dropped " << s.drops << "\n"
      << "  last connect error: " << (s.last_connect_error.empty() ? "none" : s.last_connect_error);
  return out.str();
}

int run(const demo::DemoOptions& options) {
  const reservoir::Dsn dsn = reservoir::Dsn::parse(options.pool.dsn);
  demo::Sequence sequence(dsn);
  const std::shared_ptr<reservoir::Pool> pool = reservoir::Pool::create(options.pool);
  Console console;
  console.line(describe(options, dsn));
  {
    reservoir::Lease conn = pool->acquire();
    sequence.create(*conn);
  }

  std::vector<Outcome> outcomes(options.threads, Outcome::failed);
  {
    std::vector<std::jthread> threads;
    threads.reserve(options.threads);
    for (std::uint32_t i = 0; i < options.threads; ++i) {
      threads.emplace_back(
          [&, i] { outcomes[i] = run_thread(*pool, sequence, i + 1, options.hold, console); });
    }
  }  // joins

  console.line(stats_table(pool->stats()));
  pool->close();

  for (const Outcome outcome : outcomes) {
    if (outcome == Outcome::failed) return kExitFailed;
  }
  return kExitOk;
}

}  // namespace

int main(int argc, char** argv) {
  // Messages name the program as its user typed it, without the build directory.
  const std::string program = argc > 0 && argv[0][0] != '\0'
                                  ? std::filesystem::path(argv[0]).filename().string()
                                  : "reservoir_demo";
  demo::DemoOptions options;
  try {
    const std::vector<std::string_view> args(argv + (argc > 0 ? 1 : 0), argv + argc);
    options = demo::parse_command_line(args);
  } catch (const demo::UsageError& e) {
    std::cerr << program << ": " << e.what() << "\nTry '" << program << " --help'.\n";
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << program << ": " << e.what() << "\n";
    return kExitFailed;
  }
  if (options.help) {
    std::cout << demo::usage(program);
    return kExitOk;
  }

  try {
    return run(options);
  } catch (const reservoir::Error& e) {
    std::cerr << program << ": " << reservoir::to_string(e.code()) << ": " << e.what() << "\n";
    if (e.code() != reservoir::ErrorCode::invalid_argument) return kExitFailed;
    std::cerr << "Try '" << program << " --help'.\n";
    return kExitUsage;
  } catch (const std::exception& e) {
    std::cerr << program << ": " << e.what() << "\n";
    return kExitFailed;
  }
}
