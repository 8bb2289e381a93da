// bench/pg_pool_bench.cpp: point queries on PostgreSQL (pgbench_accounts) through reservoir's pool,
// beside dedicated connections, connect-per-request, SOCI's connection_pool and Poco's SessionPool.
// Method and results: docs/benchmarks.md, "PostgreSQL point queries". Run it with scripts/bench-pg.
//
// For every thread count N and subject, N threads loop {acquire; SELECT abalance FROM
// pgbench_accounts WHERE aid = <random 1..rows>; release} for --warmup seconds (not counted)
// and then --seconds seconds (counted). Subjects:
//   reservoir   reservoir::Pool (min = max = --pool-size), `pool->acquire(); c->query(sql, key)`
//   persistent  one reservoir PostgreSQL driver connection per thread, no pool (N <= pool size)
//   connect     connect-per-request through the same driver: connect, query, close
//   soci        soci::connection_pool (--pool-size sessions, postgresql backend)
//   poco        Poco::Data::SessionPool (min = max = --pool-size, PostgreSQL connector); get()
//               throws when exhausted: counted as "exhausted" and retried after a yield
// Every pool opens all its connections before the warm-up, so connects are not measured (except,
// by design, for `connect`).

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "reservoir/reservoir.hpp"

#ifdef RESERVOIR_BENCH_HAVE_SOCI
// As in pool_bench.cpp: Debian's SOCI is configured with Boost, which only adds header-only
// binding of Fusion sequences that this file does not use.
#include <soci/soci-config.h>
#undef SOCI_HAVE_BOOST
#include <soci/connection-pool.h>
#include <soci/postgresql/soci-postgresql.h>
#include <soci/soci.h>
#endif

#ifdef RESERVOIR_BENCH_HAVE_POCO
#include <Poco/Data/DataException.h>
#include <Poco/Data/PostgreSQL/Connector.h>
#include <Poco/Data/Session.h>
#include <Poco/Data/SessionPool.h>
#include <Poco/Exception.h>
#endif

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

// The statement in each library's placeholder syntax.
constexpr const char* kSqlDollar = "SELECT abalance FROM pgbench_accounts WHERE aid = $1";
[[maybe_unused]] constexpr const char* kSqlColon =
    "SELECT abalance FROM pgbench_accounts WHERE aid = :aid";

struct Options {
  std::string dsn;
  double seconds = 5.0;
  double warmup = 1.0;
  std::vector<int> threads = {4, 8, 16, 64};
  int pool_size = 8;
  std::int64_t rows = 100'000;
  std::set<std::string> subjects = {"reservoir", "persistent", "connect", "soci", "poco"};
};

// --- Latency recording -------------------------------------------------------------------------

// A histogram of durations in nanoseconds with 8 buckets per power of two (as in pool_bench.cpp):
// a percentile read from it is at most 12.5% above the true value; recording never allocates.
class LatencyHistogram {
 public:
  void record(Clock::duration d) noexcept {
    const auto ns = static_cast<std::uint64_t>(std::max<Clock::rep>(0, d.count()));
    ++counts_[bucket_of(ns)];
    ++count_;
    if (ns > max_) max_ = ns;
  }

  void merge(const LatencyHistogram& other) noexcept {
    for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    if (other.max_ > max_) max_ = other.max_;
  }

  std::uint64_t max_ns() const noexcept { return max_; }

  // The upper bound of the bucket holding the p-th fraction of samples (p in [0, 1]).
  std::uint64_t percentile_ns(double p) const noexcept {
    if (count_ == 0) return 0;
    const auto rank = static_cast<std::uint64_t>(p * static_cast<double>(count_ - 1)) + 1;
    std::uint64_t seen = 0;
    for (std::size_t b = 0; b < counts_.size(); ++b) {
      seen += counts_[b];
      if (seen >= rank) return std::min(bucket_upper(b), max_);
    }
    return max_;
  }

 private:
  static constexpr int kSubBits = 3;
  static constexpr std::uint64_t kSub = 1u << kSubBits;

  static std::size_t bucket_of(std::uint64_t ns) noexcept {
    if (ns < kSub) return static_cast<std::size_t>(ns);
    const int e = std::bit_width(ns) - 1;  // >= kSubBits
    const std::uint64_t sub = (ns >> (e - kSubBits)) & (kSub - 1);
    return static_cast<std::size_t>((e - kSubBits + 1) * kSub + sub);
  }

  static std::uint64_t bucket_upper(std::size_t b) noexcept {
    if (b < kSub) return b;
    const int e = static_cast<int>(b / kSub) + kSubBits - 1;
    const std::uint64_t lower = (kSub + b % kSub) << (e - kSubBits);
    return lower + (std::uint64_t{1} << (e - kSubBits)) - 1;
  }

  std::array<std::uint64_t, 64 * kSub> counts_{};
  std::uint64_t count_ = 0;
  std::uint64_t max_ = 0;
};

// --- CPU accounting ----------------------------------------------------------------------------

// This process's CPU time and the whole machine's busy time, so that a run can say how the two
// cores were shared between the client (this process) and the server (everything else).
struct CpuSample {
  double process_s = 0;  // user + system of this process
  double machine_s = 0;  // all CPUs, busy (not idle, not iowait), from /proc/stat
};

CpuSample sample_cpu() {
  CpuSample s;
  rusage u{};
  if (::getrusage(RUSAGE_SELF, &u) == 0) {
    s.process_s = static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
                  static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  }
  std::ifstream stat("/proc/stat");
  std::string cpu;
  std::uint64_t v[8] = {};  // user nice system idle iowait irq softirq steal
  if (stat >> cpu && cpu == "cpu") {
    for (auto& x : v) stat >> x;
    const std::uint64_t busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    s.machine_s = static_cast<double>(busy) / static_cast<double>(::sysconf(_SC_CLK_TCK));
  }
  return s;
}

// --- Subjects ------------------------------------------------------------------------------------
//
// Each subject: kName; a constructor (opening its pool, if any) taking Options; a per-thread
// Local made on the thread before the clock starts; and query(local, key) returning abalance of
// row `key` (throwing on any failure). Local::exhausted counts Poco's failed gets.

struct LocalBase {
  std::uint64_t exhausted = 0;
};

std::int64_t single_value(const reservoir::ResultSet& rs) {
  if (rs.size() != 1) {
    throw std::runtime_error("expected 1 row, got " + std::to_string(rs.size()));
  }
  return rs[0][0].as<std::int64_t>();
}

std::shared_ptr<reservoir::Driver> postgresql_driver() {
  auto driver = reservoir::find_driver("postgresql");
  if (!driver) throw std::runtime_error("reservoir was built without the PostgreSQL driver");
  return driver;
}

struct ReservoirSubject {
  static constexpr const char* kName = "reservoir";
  struct Local : LocalBase {};

  explicit ReservoirSubject(const Options& o) {
    reservoir::PoolOptions p;
    p.dsn = o.dsn;
    p.name = "pg_pool_bench";
    p.min = static_cast<std::uint32_t>(o.pool_size);
    p.max = static_cast<std::uint32_t>(o.pool_size);
    p.fail_fast = true;
    pool = reservoir::Pool::create(p);
    // Hold every connection at once so that all are open before the clock starts.
    std::vector<reservoir::Lease> warm;
    for (int i = 0; i < o.pool_size; ++i) warm.push_back(pool->acquire());
  }
  ~ReservoirSubject() {
    try {
      pool->close(/*force=*/true);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "pg_pool_bench: closing the reservoir pool: %s\n", e.what());
    }
  }

  Local make_local() { return {}; }

  std::int64_t query(Local&, std::int64_t key) {
    auto c = pool->acquire();
    return single_value(c->query(kSqlDollar, key));
  }

  std::shared_ptr<reservoir::Pool> pool;
};

// The limit: each thread owns a connection, so there is no pool and no waiting.
struct PersistentSubject {
  static constexpr const char* kName = "persistent";
  struct Local : LocalBase {
    std::unique_ptr<reservoir::Connection> conn;
  };

  explicit PersistentSubject(const Options& o)
      : driver(postgresql_driver()), dsn(reservoir::Dsn::parse(o.dsn)) {}

  Local make_local() {
    Local l;
    l.conn = driver->connect(dsn, 10s);
    return l;
  }

  std::int64_t query(Local& l, std::int64_t key) {
    if (!l.conn || l.conn->broken()) l.conn = driver->connect(dsn, 10s);
    return single_value(l.conn->query(kSqlDollar, key));
  }

  std::shared_ptr<reservoir::Driver> driver;
  reservoir::Dsn dsn;
};

// What a pool saves: every request opens (TCP, SCRAM authentication, a new server process) and
// closes its own connection.
struct ConnectSubject {
  static constexpr const char* kName = "connect";
  struct Local : LocalBase {};

  explicit ConnectSubject(const Options& o)
      : driver(postgresql_driver()), dsn(reservoir::Dsn::parse(o.dsn)) {}

  Local make_local() { return {}; }

  std::int64_t query(Local&, std::int64_t key) {
    const auto conn = driver->connect(dsn, 10s);
    return single_value(conn->query(kSqlDollar, key));
  }

  std::shared_ptr<reservoir::Driver> driver;
  reservoir::Dsn dsn;
};

// libpq keyword/value form of the DSN, for SOCI and Poco.
std::string libpq_conninfo(const std::string& dsn_text) {
  const reservoir::Dsn d = reservoir::Dsn::parse(dsn_text);
  auto quote = [](const std::string& v) {
    std::string out = "'";
    for (char c : v) {
      if (c == '\'' || c == '\\') out += '\\';
      out += c;
    }
    return out + "'";
  };
  std::string s;
  auto add = [&](const char* key, const std::string& value) {
    if (value.empty()) return;
    if (!s.empty()) s += ' ';
    s += key;
    s += '=';
    s += quote(value);
  };
  add("host", d.host);
  add("port", d.port != 0 ? std::to_string(d.port) : std::string());
  add("dbname", d.database);
  add("user", d.user);
  add("password", d.password);
  return s;
}

#ifdef RESERVOIR_BENCH_HAVE_SOCI
struct SociSubject {
  static constexpr const char* kName = "soci";
  struct Local : LocalBase {};

  explicit SociSubject(const Options& o) : pool(static_cast<std::size_t>(o.pool_size)) {
    const std::string conninfo = libpq_conninfo(o.dsn);
    for (int i = 0; i < o.pool_size; ++i)
      pool.at(static_cast<std::size_t>(i)).open(soci::postgresql, conninfo);
  }

  Local make_local() { return {}; }

  // soci::session(pool) leases a slot (waiting without limit while none is free) and gives it
  // back in its destructor; `s << sql, into, use` is SOCI's one-shot statement.
  std::int64_t query(Local&, std::int64_t key) {
    soci::session s(pool);
    int aid = static_cast<int>(key);
    int balance = 0;
    s << kSqlColon, soci::into(balance), soci::use(aid);
    if (!s.got_data()) throw std::runtime_error("soci: no row");
    return balance;
  }

  soci::connection_pool pool;
};
#endif

#ifdef RESERVOIR_BENCH_HAVE_POCO
struct PocoSubject {
  static constexpr const char* kName = "poco";
  struct Local : LocalBase {};

  explicit PocoSubject(const Options& o)
      : pool((register_connector(), Poco::Data::PostgreSQL::Connector::KEY), libpq_conninfo(o.dsn),
             o.pool_size, o.pool_size) {
    std::vector<Poco::Data::Session> warm;
    for (int i = 0; i < o.pool_size; ++i) warm.push_back(pool.get());
  }
  ~PocoSubject() { pool.shutdown(); }

  Local make_local() { return {}; }

  std::int64_t query(Local& l, std::int64_t key) {
    using Poco::Data::Keywords::into;
    using Poco::Data::Keywords::now;
    using Poco::Data::Keywords::use;
    try {
      Poco::Data::Session s = get(l);
      int aid = static_cast<int>(key);
      int balance = -1;
      s << kSqlDollar, into(balance), use(aid), now;
      if (balance == -1) throw std::runtime_error("poco: no row");
      return balance;
    } catch (const Poco::Exception& e) {
      throw std::runtime_error("poco: " + e.displayText());
    }
  }

  // SessionPool::get() never waits: at max it throws SessionPoolExhaustedException. Count it and
  // retry after a yield, as an application would have to.
  Poco::Data::Session get(Local& l) {
    for (;;) {
      try {
        return pool.get();
      } catch (const Poco::Data::SessionPoolExhaustedException&) {
        ++l.exhausted;
        std::this_thread::yield();
      }
    }
  }

  static void register_connector() {
    static std::once_flag once;
    std::call_once(once, [] { Poco::Data::PostgreSQL::Connector::registerConnector(); });
  }

  Poco::Data::SessionPool pool;
};
#endif

// --- The timing loop -----------------------------------------------------------------------------

struct RunResult {
  std::string subject;
  int threads = 0;
  bool ran = false;
  std::string note;  // why it did not run, or the first error
  double seconds = 0;
  std::uint64_t queries = 0;  // successful, inside the counted window
  std::uint64_t errors = 0;   // warm-up and counted window together
  std::uint64_t exhausted = 0;
  std::uint64_t p50_ns = 0, p99_ns = 0, max_ns = 0;
  double client_cpu_s = 0, machine_cpu_s = 0;

  double qps() const { return seconds > 0 ? static_cast<double>(queries) / seconds : 0; }
};

struct alignas(64) ThreadRecord {
  std::uint64_t queries = 0;
  std::uint64_t errors = 0;
  std::uint64_t exhausted = 0;
  std::string first_error;
  LatencyHistogram latency;
};

enum Phase : int { kWarmup, kCounted, kStop };

// A small, fast generator per thread (xorshift64*): std::mt19937_64 would do, but this keeps the
// client's share of the two cores as small as possible.
class KeyGenerator {
 public:
  explicit KeyGenerator(std::uint64_t seed) : s_(seed * 0x9E3779B97F4A7C15ull | 1) {}
  std::int64_t next(std::int64_t rows) noexcept {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return 1 + static_cast<std::int64_t>((s_ * 0x2545F4914F6CDD1Dull) %
                                         static_cast<std::uint64_t>(rows));
  }

 private:
  std::uint64_t s_;
};

template <class Subject>
RunResult run(const Options& o, int n) {
  RunResult r;
  r.subject = Subject::kName;
  r.threads = n;
  std::optional<Subject> subject;
  try {
    subject.emplace(o);
  } catch (const std::exception& e) {
    r.note = std::string("set-up failed: ") + e.what();
    return r;
  }

  std::vector<ThreadRecord> records(static_cast<std::size_t>(n));
  std::atomic<int> phase{kWarmup};
  std::latch ready(n + 1);
  std::vector<std::jthread> workers;
  workers.reserve(static_cast<std::size_t>(n));
  for (int t = 0; t < n; ++t) {
    workers.emplace_back([&, t] {
      ThreadRecord& rec = records[static_cast<std::size_t>(t)];
      auto fail = [&rec](const char* what) {
        ++rec.errors;
        if (rec.first_error.empty()) rec.first_error = what;
      };
      std::optional<typename Subject::Local> local;
      try {
        local.emplace(subject->make_local());
      } catch (const std::exception& e) {
        fail(e.what());
      }
      ready.arrive_and_wait();
      if (!local) return;
      KeyGenerator keys(static_cast<std::uint64_t>(t) + 1);
      std::int64_t sink = 0;
      while (phase.load(std::memory_order_acquire) != kStop) {
        const std::int64_t key = keys.next(o.rows);
        const auto start = Clock::now();
        bool ok = true;
        try {
          sink += subject->query(*local, key);
        } catch (const std::exception& e) {
          ok = false;
          fail(e.what());
        }
        const auto end = Clock::now();
        if (phase.load(std::memory_order_acquire) == kCounted) {
          rec.exhausted += local->exhausted;
          if (ok) {
            ++rec.queries;
            rec.latency.record(end - start);
          }
        }
        local->exhausted = 0;
      }
      if (sink != 0) rec.first_error = "abalance is not 0 (pgbench -i data expected)";
    });
  }

  ready.arrive_and_wait();
  std::this_thread::sleep_for(std::chrono::duration<double>(o.warmup));
  const CpuSample cpu0 = sample_cpu();
  const auto t0 = Clock::now();
  phase.store(kCounted, std::memory_order_release);
  std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
  phase.store(kStop, std::memory_order_release);
  const auto t1 = Clock::now();
  const CpuSample cpu1 = sample_cpu();
  workers.clear();  // joins

  LatencyHistogram all;
  for (const ThreadRecord& rec : records) {
    r.queries += rec.queries;
    r.errors += rec.errors;
    r.exhausted += rec.exhausted;
    all.merge(rec.latency);
    if (r.note.empty() && !rec.first_error.empty()) r.note = rec.first_error;
  }
  r.ran = true;
  r.seconds = std::chrono::duration<double>(t1 - t0).count();
  r.p50_ns = all.percentile_ns(0.50);
  r.p99_ns = all.percentile_ns(0.99);
  r.max_ns = all.max_ns();
  r.client_cpu_s = cpu1.process_s - cpu0.process_s;
  r.machine_cpu_s = cpu1.machine_s - cpu0.machine_s;
  return r;
}

// --- Reporting ---------------------------------------------------------------------------------

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string us(std::uint64_t ns) { return fixed(static_cast<double>(ns) / 1e3, 0); }

void print_line(const RunResult& r) {
  if (!r.ran) {
    std::printf("| %3d | %-10s | not run: %s |\n", r.threads, r.subject.c_str(), r.note.c_str());
    std::fflush(stdout);
    return;
  }
  // CPU per query: this process (the client side of every subject) and the rest of the machine
  // (the PostgreSQL server processes, mostly), in microseconds.
  const double q = std::max<double>(1.0, static_cast<double>(r.queries));
  const double client_us = r.client_cpu_s / q * 1e6;
  const double server_us = std::max(0.0, r.machine_cpu_s - r.client_cpu_s) / q * 1e6;
  std::string note = r.note;
  if (note.size() > 100) note = note.substr(0, 100) + "...";
  std::printf(
      "| %3d | %-10s | %10s | %6llu | %9llu | %7s | %7s | %8s | %6s | %6s | %4s | %s |\n",
      r.threads, r.subject.c_str(), fixed(r.qps(), 0).c_str(),
      static_cast<unsigned long long>(r.errors), static_cast<unsigned long long>(r.exhausted),
      us(r.p50_ns).c_str(), us(r.p99_ns).c_str(), us(r.max_ns).c_str(), fixed(client_us, 1).c_str(),
      fixed(server_us, 1).c_str(), fixed(r.machine_cpu_s / r.seconds, 2).c_str(), note.c_str());
  std::fflush(stdout);
}

struct Target {
  std::string what;
  double ratio;  // 0: not measured
  double goal;
};

void report(const Options& o, const std::vector<RunResult>& results) {
  auto find = [&](const char* subject, int n) -> const RunResult* {
    for (const auto& r : results) {
      if (r.subject == subject && r.threads == n && r.ran && r.queries > 0) return &r;
    }
    return nullptr;
  };
  auto ratio = [&](const RunResult* a, const RunResult* b) {
    return a != nullptr && b != nullptr && b->qps() > 0 ? a->qps() / b->qps() : 0.0;
  };
  auto cell = [](double x, int decimals) { return x > 0 ? fixed(x, decimals) + "x" : "-"; };

  std::printf(
      "\nRatios (reservoir queries/s over the other's):\n\n"
      "| threads | reservoir q/s | / persistent | / SOCI | / Poco | / connect-per-request |\n"
      "|--------:|--------------:|-------------:|-------:|-------:|---------------------:|\n");
  std::vector<Target> targets;
  for (int n : o.threads) {
    const RunResult* res = find("reservoir", n);
    const double p = ratio(res, find("persistent", n));
    const double s = ratio(res, find("soci", n));
    const double k = ratio(res, find("poco", n));
    const double c = ratio(res, find("connect", n));
    std::printf("| %7d | %13s | %12s | %6s | %6s | %20s |\n", n,
                res != nullptr ? fixed(res->qps(), 0).c_str() : "-", cell(p, 3).c_str(),
                cell(s, 2).c_str(), cell(k, 2).c_str(), cell(c, 0).c_str());
    const std::string at = " at N=" + std::to_string(n);
    if (n == o.pool_size) targets.push_back({"reservoir >= 0.97x persistent" + at, p, 0.97});
    if (o.subjects.contains("soci")) targets.push_back({"reservoir >= 1.15x SOCI" + at, s, 1.15});
    if (o.subjects.contains("poco")) targets.push_back({"reservoir >= 2.5x Poco" + at, k, 2.5});
    if (o.subjects.contains("connect")) {
      targets.push_back({"reservoir >= 150x connect-per-request" + at, c, 150});
    }
  }

  std::printf("\nTargets:\n\n");
  for (const Target& t : targets) {
    std::printf("- %-46s %8s  %s\n", t.what.c_str(), cell(t.ratio, 3).c_str(),
                t.ratio == 0 ? "NOT MEASURED" : (t.ratio >= t.goal ? "met" : "MISSED"));
  }
  std::uint64_t reservoir_errors = 0;
  bool reservoir_ran = false;
  for (const auto& r : results) {
    if (r.subject == "reservoir") {
      reservoir_errors += r.errors;
      reservoir_ran = reservoir_ran || r.ran;
    }
  }
  if (reservoir_ran) {
    std::printf("- %-46s %8llu  %s\n", "no errors from reservoir at any N",
                static_cast<unsigned long long>(reservoir_errors),
                reservoir_errors == 0 ? "met" : "MISSED");
  }
}

// --- Command line --------------------------------------------------------------------------------

std::vector<std::string> split(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream in(s);
  for (std::string item; std::getline(in, item, ',');) {
    if (!item.empty()) out.push_back(item);
  }
  return out;
}

[[noreturn]] void usage(int status) {
  std::fprintf(
      status == 0 ? stdout : stderr,
      "usage: pg_pool_bench [--dsn postgresql://user:pw@127.0.0.1:PORT/db] [--seconds 5]\n"
      "                     [--warmup 1] [--threads 4,8,16,64] [--pool-size 8] [--rows 100000]\n"
      "                     [--subjects reservoir,persistent,connect,soci,poco]\n"
      "The DSN defaults to $RESERVOIR_PG_DSN. The database must hold pgbench's tables\n"
      "(pgbench -i -s 1 for 100000 rows); scripts/bench-pg sets everything up.\n");
  std::exit(status);
}

Options parse_options(int argc, char** argv) {
  Options o;
  if (const char* env = std::getenv("RESERVOIR_PG_DSN")) o.dsn = env;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") usage(0);
    if (i + 1 >= argc) usage(2);
    const std::string value = argv[++i];
    try {
      if (arg == "--dsn") {
        o.dsn = value;
      } else if (arg == "--seconds") {
        o.seconds = std::stod(value);
      } else if (arg == "--warmup") {
        o.warmup = std::stod(value);
      } else if (arg == "--pool-size") {
        o.pool_size = std::stoi(value);
      } else if (arg == "--rows") {
        o.rows = std::stoll(value);
      } else if (arg == "--threads") {
        o.threads.clear();
        for (const auto& t : split(value)) o.threads.push_back(std::stoi(t));
      } else if (arg == "--subjects") {
        o.subjects.clear();
        for (const auto& s : split(value)) o.subjects.insert(s);
      } else {
        usage(2);
      }
    } catch (const std::logic_error&) {  // stoi and friends
      std::fprintf(stderr, "pg_pool_bench: bad value for %s: %s\n", arg.c_str(), value.c_str());
      std::exit(2);
    }
  }
  if (o.dsn.empty()) {
    std::fprintf(stderr, "pg_pool_bench: no DSN (--dsn or RESERVOIR_PG_DSN)\n");
    usage(2);
  }
  if (o.seconds <= 0 || o.warmup < 0 || o.pool_size < 1 || o.rows < 1 || o.threads.empty() ||
      std::ranges::any_of(o.threads, [](int t) { return t < 1 || t > 1024; })) {
    std::fprintf(stderr, "pg_pool_bench: --seconds, --pool-size, --rows, --threads out of range\n");
    std::exit(2);
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse_options(argc, argv);
  std::string redacted;
  try {
    redacted = reservoir::Dsn::parse(o.dsn).redacted();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pg_pool_bench: %s\n", e.what());
    return 2;
  }

  std::printf(
      "pg_pool_bench: %s, pool size %d, %.1f s warm-up + %.1f s counted per line, keys "
      "1..%lld, %u hardware threads\n",
      redacted.c_str(), o.pool_size, o.warmup, o.seconds, static_cast<long long>(o.rows),
      std::thread::hardware_concurrency());
#ifndef RESERVOIR_BENCH_HAVE_SOCI
  std::printf("pg_pool_bench: built without SOCI's postgresql backend; soci left out\n");
#endif
#ifndef RESERVOIR_BENCH_HAVE_POCO
  std::printf("pg_pool_bench: built without Poco's DataPostgreSQL; poco left out\n");
#endif
  std::printf(
      "\nlatency: acquire + query + release, per query, in microseconds; CPU: microseconds of CPU\n"
      "per query in this process (client) and in the rest of the machine (server), and cores "
      "busy\n\n"
      "| N   | subject    | queries/s  | errors | exhausted | p50 us  | p99 us  | max us   | "
      "client | server | busy | note |\n"
      "|----:|------------|-----------:|-------:|----------:|--------:|--------:|---------:|-------"
      ":|-------:|-----:|------|\n");
  std::fflush(stdout);

  std::vector<RunResult> results;
  auto add = [&](RunResult r) {
    print_line(r);
    results.push_back(std::move(r));
  };
  for (int n : o.threads) {
    if (o.subjects.contains("reservoir")) add(run<ReservoirSubject>(o, n));
    // One dedicated connection per thread is the limit only while it needs no more connections
    // than the pool has.
    if (o.subjects.contains("persistent") && n <= o.pool_size) add(run<PersistentSubject>(o, n));
    if (o.subjects.contains("soci")) {
#ifdef RESERVOIR_BENCH_HAVE_SOCI
      add(run<SociSubject>(o, n));
#endif
    }
    if (o.subjects.contains("poco")) {
#ifdef RESERVOIR_BENCH_HAVE_POCO
      add(run<PocoSubject>(o, n));
#endif
    }
    if (o.subjects.contains("connect")) add(run<ConnectSubject>(o, n));
  }
  report(o, results);
  return 0;
}
