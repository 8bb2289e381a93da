// bench/async_bench.cpp: the async API's workload against the synchronous API's, on PostgreSQL.
// `async`: C coroutines (default 10,000) on ONE thread share a pool of P connections (default
// 16); `sync`: T threads (default 64) share the same kind of pool through the blocking API. Each
// loop: acquire; SELECT one row of pgbench_accounts by a random key; release. Reports queries/s
// over a fixed window and the process's memory (VmRSS before the workers start and at the end,
// and VmHWM, the peak). With --rounds R (R > 0) it runs each mode R times, alternating, each
// round in a fresh process of its own (so that the memory figures are the mode's own), and
// prints the rounds and a summary (best and median queries/s, and their ratio). --pin puts the
// server (--server-pid: the postmaster and its children) on the last CPU and the benchmark on
// the others, as if the database ran on a host of its own.
//
//   scripts/bench-async                       (starts a server, runs --rounds 5, both pinnings)
//   RESERVOIR_PG_DSN=postgresql://... async_bench --mode async --seconds 3
#include <dirent.h>
#include <sched.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/io_context.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "reservoir/async.hpp"
#include "reservoir/reservoir.hpp"

namespace {

using Clock = std::chrono::steady_clock;
const char* const kSql = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";

struct Args {
  std::string mode = "async";
  double seconds = 3.0;
  double warmup = 0.5;
  std::uint32_t coroutines = 10'000;
  std::uint32_t threads = 64;
  std::uint32_t pool_size = 16;
  std::int64_t rows = 100'000;
  int rounds = 0;       // > 0: the parent that runs rounds in child processes
  long server_pid = 0;  // the postmaster, for --pin
  bool pin = false;
};

[[noreturn]] void usage(const char* why) {
  std::cerr << "async_bench: " << why << "\n"
            << "usage: async_bench [--mode async|sync] [--seconds S] [--warmup S] [--coroutines C]"
               " [--threads T] [--pool-size P] [--rows N] [--rounds R] [--server-pid PID] [--pin]\n"
               "  the DSN comes from RESERVOIR_PG_DSN (scripts/bench-async sets it)\n";
  std::exit(2);
}

Args parse(int argc, char** argv) {
  Args a;
  for (int i = 1; i < argc; ++i) {
    const std::string k = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) usage(("missing value for " + k).c_str());
      return argv[++i];
    };
    if (k == "--mode") {
      a.mode = next();
    } else if (k == "--seconds") {
      a.seconds = std::stod(next());
    } else if (k == "--warmup") {
      a.warmup = std::stod(next());
    } else if (k == "--coroutines") {
      a.coroutines = static_cast<std::uint32_t>(std::stoul(next()));
    } else if (k == "--threads") {
      a.threads = static_cast<std::uint32_t>(std::stoul(next()));
    } else if (k == "--pool-size") {
      a.pool_size = static_cast<std::uint32_t>(std::stoul(next()));
    } else if (k == "--rows") {
      a.rows = std::stoll(next());
    } else if (k == "--db") {  // scripts/bench-pg passes it
      if (next() != "postgresql") usage("only --db postgresql");
    } else if (k == "--rounds") {
      a.rounds = std::stoi(next());
    } else if (k == "--server-pid") {
      a.server_pid = std::stol(next());
    } else if (k == "--pin") {
      a.pin = true;
    } else if (k == "--help" || k == "-h") {
      usage("help");
    } else {
      usage(("unknown option " + k).c_str());
    }
  }
  if (a.mode != "async" && a.mode != "sync") usage("--mode must be async or sync");
  return a;
}

// A /proc/self/status field in KiB.
long status_kib(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string line;
  const std::size_t n = std::strlen(field);
  while (std::getline(in, line))
    if (line.compare(0, n, field) == 0 && line.size() > n && line[n] == ':')
      return std::strtol(line.c_str() + n + 1, nullptr, 10);
  return -1;
}

struct Rng {  // xorshift64*: each worker its own
  std::uint64_t s;
  std::int64_t key(std::int64_t rows) {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    return static_cast<std::int64_t>((s * 2685821657736338717ULL) % rows) + 1;
  }
};

struct Counters {
  std::atomic<bool> counting{false}, stop{false};
  std::atomic<std::uint64_t> queries{0}, errors{0};
};

bool check_row(const reservoir::ResultSet& rows) {
  return rows.size() == 1 && rows[0][0].as<std::int64_t>() == 0;
}

asio::awaitable<void> async_worker(reservoir::Pool& pool, Counters& c, std::uint64_t seed,
                                   std::int64_t nrows) {
  Rng rng{seed * 0x9E3779B97F4A7C15ULL + 1};
  while (!c.stop.load(std::memory_order_relaxed)) {
    try {
      reservoir::Lease lease = co_await pool.async_acquire();
      reservoir::ResultSet rows = co_await reservoir::async_query(*lease, kSql, rng.key(nrows));
      if (!check_row(rows)) c.errors.fetch_add(1, std::memory_order_relaxed);
      if (c.counting.load(std::memory_order_relaxed))
        c.queries.fetch_add(1, std::memory_order_relaxed);
    } catch (const std::exception& e) {
      if (c.errors.fetch_add(1) < 3) std::cerr << "async_bench: " << e.what() << "\n";
    }
  }
}

void sync_worker(reservoir::Pool& pool, Counters& c, std::uint64_t seed, std::int64_t nrows) {
  Rng rng{seed * 0x9E3779B97F4A7C15ULL + 1};
  while (!c.stop.load(std::memory_order_relaxed)) {
    try {
      reservoir::Lease lease = pool.acquire();
      reservoir::ResultSet rows = lease->query(kSql, rng.key(nrows));
      if (!check_row(rows)) c.errors.fetch_add(1, std::memory_order_relaxed);
      if (c.counting.load(std::memory_order_relaxed))
        c.queries.fetch_add(1, std::memory_order_relaxed);
    } catch (const std::exception& e) {
      if (c.errors.fetch_add(1) < 3) std::cerr << "async_bench: " << e.what() << "\n";
    }
  }
}

// --pin: the server's processes (the postmaster, whose new children inherit it, and the children
// running now) on the last CPU; this process on the others.
void pin(long server_pid) {
  const long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
  if (ncpu < 2 || server_pid <= 0) {
    std::cerr << "async_bench: --pin needs 2 CPUs and --server-pid\n";
    std::exit(2);
  }
  cpu_set_t server, client;
  CPU_ZERO(&server);
  CPU_ZERO(&client);
  CPU_SET(ncpu - 1, &server);
  for (long c = 0; c + 1 < ncpu; ++c) CPU_SET(c, &client);
  std::vector<pid_t> pids{static_cast<pid_t>(server_pid)};
  if (DIR* d = opendir("/proc")) {
    while (dirent* e = readdir(d)) {
      const long pid = std::strtol(e->d_name, nullptr, 10);
      if (pid <= 0) continue;
      std::ifstream stat(std::string("/proc/") + e->d_name + "/stat");
      std::string line;
      std::getline(stat, line);
      const auto close = line.rfind(')');
      if (close == std::string::npos) continue;
      std::istringstream rest(line.substr(close + 2));
      char state;
      long ppid = 0;
      rest >> state >> ppid;
      if (ppid == server_pid) pids.push_back(static_cast<pid_t>(pid));
    }
    closedir(d);
  }
  for (pid_t p : pids) sched_setaffinity(p, sizeof server, &server);
  if (sched_setaffinity(0, sizeof client, &client) != 0) {
    std::cerr << "async_bench: sched_setaffinity failed\n";
    std::exit(2);
  }
}

// The parent: runs the rounds, each in a child process (this program with --rounds 0), and
// summarises their result lines.
int run_rounds(const Args& a, int argc, char** argv) {
  std::map<std::string, std::vector<long>> qps;
  std::map<std::string, std::vector<long>> per_worker;
  int failures = 0;
  for (int r = 0; r < a.rounds; ++r) {
    for (const char* mode : {"async", "sync"}) {
      // The same arguments, with --rounds 0 and the mode of this round.
      std::vector<std::string> args{argv[0]};
      for (int i = 1; i < argc; ++i) {
        const std::string k = argv[i];
        if (k == "--rounds" || k == "--mode") {
          ++i;
          continue;
        }
        args.push_back(k);
      }
      args.insert(args.end(), {"--rounds", "0", "--mode", mode});
      std::vector<char*> cargv;
      for (auto& s : args) cargv.push_back(s.data());
      cargv.push_back(nullptr);
      int fds[2];
      if (pipe(fds) != 0) return 1;
      posix_spawn_file_actions_t fa;
      posix_spawn_file_actions_init(&fa);
      posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
      posix_spawn_file_actions_addclose(&fa, fds[0]);
      pid_t child;
      if (posix_spawn(&child, "/proc/self/exe", &fa, nullptr, cargv.data(), environ) != 0) {
        std::cerr << "async_bench: cannot start a round\n";
        return 1;
      }
      posix_spawn_file_actions_destroy(&fa);
      close(fds[1]);
      std::string out;
      char buf[4096];
      for (ssize_t n; (n = read(fds[0], buf, sizeof buf)) > 0;) out.append(buf, n);
      close(fds[0]);
      int status = 0;
      waitpid(child, &status, 0);
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) ++failures;
      std::cout << "round " << r + 1 << ": " << out << std::flush;
      auto field = [&](const std::string& key) {
        const auto at = out.find(" " + key + "=");
        return at == std::string::npos
                   ? -1L
                   : std::strtol(out.c_str() + at + key.size() + 2, nullptr, 10);
      };
      qps[mode].push_back(field("qps"));
      per_worker[mode].push_back(field("per_worker_bytes"));
    }
  }
  auto best = [](std::vector<long> v) { return *std::max_element(v.begin(), v.end()); };
  auto median = [](std::vector<long> v) {
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
  };
  std::cout << "summary" << (a.pin ? " (pinned: server on the last CPU)" : " (not pinned)")
            << ": async best " << best(qps["async"]) << " median " << median(qps["async"])
            << " q/s, " << median(per_worker["async"]) << " B per coroutine; sync best "
            << best(qps["sync"]) << " median " << median(qps["sync"]) << " q/s, "
            << median(per_worker["sync"]) << " B per thread; async/sync best "
            << static_cast<double>(best(qps["async"])) / best(qps["sync"]) << " median "
            << static_cast<double>(median(qps["async"])) / median(qps["sync"]) << "; failed rounds "
            << failures << "\n";
  return failures == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  const Args a = parse(argc, argv);
  if (a.pin) pin(a.server_pid);
  if (a.rounds > 0) return run_rounds(a, argc, argv);
  const char* dsn = std::getenv("RESERVOIR_PG_DSN");
  if (dsn == nullptr || *dsn == '\0') usage("RESERVOIR_PG_DSN is not set");

  reservoir::PoolOptions o;
  o.dsn = dsn;
  o.min = o.max = a.pool_size;
  o.get_mode = reservoir::GetMode::timed_wait;
  o.wait_timeout = std::chrono::seconds(60);
  o.fail_fast = true;
  auto pool = reservoir::Pool::create(o);
  const long rss_before = status_kib("VmRSS");

  Counters c;
  const auto window = std::chrono::duration<double>(a.seconds);
  const auto warm = std::chrono::duration<double>(a.warmup);
  double elapsed = 0;
  std::uint32_t workers = 0;
  long rss_during = 0;
  if (a.mode == "async") {
    workers = a.coroutines;
    asio::io_context io(1);  // one thread: the concurrency hint lets Asio skip its locking
    for (std::uint32_t i = 0; i < workers; ++i)
      asio::co_spawn(io, async_worker(*pool, c, i, a.rows), asio::detached);
    // The clock: a timer on the same thread starts and ends the counted window.
    Clock::time_point t0{}, t1{};
    asio::co_spawn(
        io,
        [&]() -> asio::awaitable<void> {
          asio::steady_timer t(io);
          t.expires_after(std::chrono::duration_cast<Clock::duration>(warm));
          co_await t.async_wait(asio::use_awaitable);
          c.counting = true;
          t0 = Clock::now();
          t.expires_after(std::chrono::duration_cast<Clock::duration>(window));
          co_await t.async_wait(asio::use_awaitable);
          t1 = Clock::now();
          c.counting = false;
          rss_during = status_kib("VmRSS");
          c.stop = true;
        },
        asio::detached);
    io.run();
    elapsed = std::chrono::duration<double>(t1 - t0).count();
  } else {
    workers = a.threads;
    std::vector<std::thread> ts;
    for (std::uint32_t i = 0; i < workers; ++i)
      ts.emplace_back([&, i] { sync_worker(*pool, c, i, a.rows); });
    std::this_thread::sleep_for(warm);  // the benchmark's own clock, not synchronisation
    c.counting = true;
    const auto t0 = Clock::now();
    std::this_thread::sleep_for(window);
    c.counting = false;
    const auto t1 = Clock::now();
    rss_during = status_kib("VmRSS");
    c.stop = true;
    for (auto& t : ts) t.join();
    elapsed = std::chrono::duration<double>(t1 - t0).count();
  }
  const auto s = pool->stats();
  const double qps = c.queries.load() / elapsed;
  std::cout << "mode=" << a.mode << " workers=" << workers << " pool=" << a.pool_size
            << " threads=" << (a.mode == "async" ? 1 : workers) << " seconds=" << elapsed
            << " queries=" << c.queries.load() << " qps=" << static_cast<long>(qps)
            << " errors=" << c.errors.load() << " rss_before_kib=" << rss_before
            << " rss_during_kib=" << rss_during << " hwm_kib=" << status_kib("VmHWM")
            << " per_worker_bytes="
            << (workers > 0 ? (rss_during - rss_before) * 1024 / static_cast<long>(workers) : 0)
            << " waits=" << s.waits << " max_waiting=" << s.max_waiting << "\n";
  pool->close(true);
  return c.errors.load() == 0 ? 0 : 1;
}
