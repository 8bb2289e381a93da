// bench/pool_bench.cpp: the acquire+release cycle of reservoir::Pool beside SOCI's connection_pool
// and Poco's SessionPool, over SQLite sessions to one WAL database. Method and results:
// docs/benchmarks.md.
//
// Families (each at 1, 2, 4, 8, 16 threads, with pool max 4 and with pool max = threads):
//   cycle/<subject>/max:<m>          acquire; release. Nothing else in the loop.
//   cycle_latency/<subject>/max:<m>  the same, with each acquire timed (max_wait_us, p99_wait_us).
//   select1/<subject>/max:<m>        acquire; SELECT 1 and read the value; release.
// Every pool opens all its connections before the timed loop (min = max), so the loop measures
// the pool, not connects. Poco's SessionPool does not wait when exhausted: get() throws, and the
// loop counts that in "exhausted" and retries after a yield.

#include <benchmark/benchmark.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "latency_histogram.hpp"
#include "reservoir/reservoir.hpp"

#ifdef RESERVOIR_BENCH_HAVE_SOCI
// Debian's SOCI is configured with Boost, but Boost only adds header-only binding of Fusion
// sequences (bind-values.h), which this file does not use; switch it off so that building the
// bench does not need the Boost headers. No class layout depends on it.
#include <soci/soci-config.h>
#undef SOCI_HAVE_BOOST
#include <soci/connection-pool.h>
#include <soci/soci.h>
#include <soci/sqlite3/soci-sqlite3.h>
#endif

#ifdef RESERVOIR_BENCH_HAVE_POCO
#include <Poco/Data/DataException.h>
#include <Poco/Data/SQLite/Connector.h>
#include <Poco/Data/Session.h>
#include <Poco/Data/SessionPool.h>
#endif

namespace {

using Clock = std::chrono::steady_clock;

constexpr int kThreadCounts[] = {1, 2, 4, 8, 16};
constexpr int kFixedMax = 4;
constexpr int kMaxThreads = 64;
static_assert(*std::ranges::max_element(kThreadCounts) <= kMaxThreads);

// The database file every pool connects to; set once in main() before any benchmark runs.
std::string g_db_path;

// --- Acquire-wait recording --------------------------------------------------------------------

// Acquire waits (bench/latency_histogram.hpp).
using WaitHistogram = reservoir::bench::LatencyHistogram;

// One per benchmark thread, written only by that thread inside the loop. Thread 0 reads all of
// them after the loop: Google Benchmark lets no thread leave the loop before all have finished
// it, and that barrier orders the writes before the reads.
struct alignas(64) ThreadRecord {
  WaitHistogram waits;
  std::uint64_t exhausted = 0;  // Poco: SessionPoolExhaustedException thrown by get()
};
ThreadRecord g_records[kMaxThreads];

// --- The pool under test -----------------------------------------------------------------------

// Holds the one pool under test, shared by all threads of a run. Each thread asks for it before
// the loop; the first builds it and the others wait on the mutex. A request with another key
// (subject and max) replaces it, so only one pool's connections are open at a time.
class Fixture {
 public:
  template <class Subject>
  static std::shared_ptr<Subject> get(int max) {
    const std::string key = std::string(Subject::kName) + "/" + std::to_string(max);
    std::lock_guard lock(mutex_);
    if (key != key_) {
      current_.reset();  // close the previous pool before opening the next
      key_.clear();
      current_ = std::make_shared<Subject>(max);
      key_ = key;
    }
    return std::static_pointer_cast<Subject>(current_);
  }

  static void clear() {
    std::lock_guard lock(mutex_);
    current_.reset();
    key_.clear();
  }

 private:
  static inline std::mutex mutex_;
  static inline std::string key_;
  static inline std::shared_ptr<void> current_;
};

// Each subject: kName; a constructor opening max connections up front; acquire(record)
// returning an RAII handle whose destructor gives the connection back; select1(handle).

struct ReservoirSubject {
  static constexpr const char* kName = "reservoir";
  static constexpr bool kThrowsWhenExhausted = false;

  explicit ReservoirSubject(int max) {
    reservoir::PoolOptions o;
    o.dsn = "sqlite://" + g_db_path;
    o.name = "bench";
    o.min = static_cast<std::uint32_t>(max);
    o.max = static_cast<std::uint32_t>(max);
    o.get_mode = reservoir::GetMode::wait;
    o.fail_fast = true;
    pool = reservoir::Pool::create(o);
    // Hold every connection at once so all are open (and touched) before the loop.
    std::vector<reservoir::Lease> warm;
    for (int i = 0; i < max; ++i) warm.push_back(pool->acquire());
  }
  ~ReservoirSubject() {
    try {
      pool->close(/*force=*/true);
    } catch (const std::exception& e) {
      std::fprintf(stderr, "pool_bench: closing the reservoir pool: %s\n", e.what());
    }
  }

  reservoir::Lease acquire(ThreadRecord&) { return pool->acquire(); }

  // Acquires that had to wait so far (PoolStats::waits); read outside the timed loop only.
  std::uint64_t waits() const { return pool->stats().waits; }

  static std::int64_t select1(reservoir::Lease& lease) {
    return lease->query("SELECT 1")[0][0].as<std::int64_t>();
  }

  std::shared_ptr<reservoir::Pool> pool;
};

#ifdef RESERVOIR_BENCH_HAVE_SOCI
struct SociSubject {
  static constexpr const char* kName = "soci";
  static constexpr bool kThrowsWhenExhausted = false;

  explicit SociSubject(int max) : pool(static_cast<std::size_t>(max)) {
    for (int i = 0; i < max; ++i) pool.at(i).open(soci::sqlite3, "db=" + g_db_path);
  }

  // soci::session(pool) leases a slot (waiting, without limit, while none is free) and gives it
  // back in its destructor. Returned as a prvalue: session is neither copyable nor movable.
  soci::session acquire(ThreadRecord&) { return soci::session(pool); }

  static std::int64_t select1(soci::session& s) {
    int v = 0;
    s << "SELECT 1", soci::into(v);
    return v;
  }

  soci::connection_pool pool;
};
#endif

#ifdef RESERVOIR_BENCH_HAVE_POCO
struct PocoSubject {
  static constexpr const char* kName = "poco";
  static constexpr bool kThrowsWhenExhausted = true;

  explicit PocoSubject(int max) : pool((register_connector(), "SQLite"), g_db_path, max, max) {
    std::vector<Poco::Data::Session> warm;
    for (int i = 0; i < max; ++i) warm.push_back(pool.get());
  }
  ~PocoSubject() { pool.shutdown(); }

  // SessionPool::get() never waits: at max it throws SessionPoolExhaustedException. Count it and
  // retry after a yield, as an application would have to.
  Poco::Data::Session acquire(ThreadRecord& record) {
    for (;;) {
      try {
        return pool.get();
      } catch (const Poco::Data::SessionPoolExhaustedException&) {
        ++record.exhausted;
        std::this_thread::yield();
      }
    }
  }

  static std::int64_t select1(Poco::Data::Session& s) {
    using Poco::Data::Keywords::into;
    using Poco::Data::Keywords::now;
    int v = 0;
    s << "SELECT 1", into(v), now;
    return v;
  }

  static void register_connector() {
    static std::once_flag once;
    std::call_once(once, [] { Poco::Data::SQLite::Connector::registerConnector(); });
  }

  Poco::Data::SessionPool pool;
};
#endif

// --- The benchmark ------------------------------------------------------------------------------

enum class Family { cycle, cycle_latency, select1 };

const char* to_string(Family f) {
  switch (f) {
    case Family::cycle:
      return "cycle";
    case Family::cycle_latency:
      return "cycle_latency";
    case Family::select1:
      return "select1";
  }
  return "?";
}

template <class Subject, Family kFamily>
void run(benchmark::State& state, int max) {
  ThreadRecord& record = g_records[state.thread_index()];
  record.waits.clear();
  record.exhausted = 0;

  std::shared_ptr<Subject> subject;
  try {
    subject = Fixture::get<Subject>(max);
  } catch (const std::exception& e) {
    state.SkipWithError(e.what());  // the loop below then runs no iteration
  }

  // Only reservoir counts its waits; thread 0 reads the counter on both sides of the loop's
  // barriers, so the difference is exactly this run's.
  constexpr bool kCountsWaits = requires(const Subject& x) { x.waits(); };
  std::uint64_t waits_before = 0;
  if constexpr (kCountsWaits) {
    if (subject && state.thread_index() == 0) waits_before = subject->waits();
  }

  // An exception inside the loop marks the run failed; the remaining iterations are skipped
  // rather than leaving the loop, so this thread still meets the others at its closing barrier.
  bool failed = false;
  for (auto _ : state) {
    if (failed) continue;
    try {
      if constexpr (kFamily == Family::cycle) {
        auto lease = subject->acquire(record);
      } else if constexpr (kFamily == Family::cycle_latency) {
        const auto start = Clock::now();
        auto lease = subject->acquire(record);
        record.waits.record(Clock::now() - start);
      } else {
        auto lease = subject->acquire(record);
        benchmark::DoNotOptimize(Subject::select1(lease));
      }
    } catch (const std::exception& e) {
      failed = true;
      state.SkipWithError(e.what());
    }
  }

  state.SetItemsProcessed(state.iterations());
  if constexpr (Subject::kThrowsWhenExhausted) {
    state.counters["exhausted"] = static_cast<double>(record.exhausted);  // summed over threads
  }
  if constexpr (kCountsWaits) {
    if (subject && state.thread_index() == 0) {
      // The fraction of acquires that waited (Google Benchmark divides by all threads' cycles).
      state.counters["waited"] = benchmark::Counter(
          static_cast<double>(subject->waits() - waits_before), benchmark::Counter::kAvgIterations);
    }
  }
  if (kFamily == Family::cycle_latency && state.thread_index() == 0) {
    WaitHistogram all;
    for (int t = 0; t < state.threads(); ++t) all.merge(g_records[t].waits);
    // Set by thread 0 only; Google Benchmark sums counters over threads.
    state.counters["max_wait_us"] = static_cast<double>(all.max_ns()) / 1e3;
    state.counters["p99_wait_us"] = static_cast<double>(all.percentile_ns(0.99)) / 1e3;
  }
}

template <class Subject, Family kFamily>
void register_one(int threads, int max) {
  const std::string name =
      std::string(to_string(kFamily)) + "/" + Subject::kName + "/max:" + std::to_string(max);
  benchmark::RegisterBenchmark(name.c_str(),
                               [max](benchmark::State& s) { run<Subject, kFamily>(s, max); })
      ->Threads(threads)
      ->UseRealTime();
}

// Registration order is run order: by thread count, then pool max, then subject, so the
// subjects' lines for one configuration sit together in the output.
template <Family kFamily>
void register_family() {
  for (int threads : kThreadCounts) {
    std::vector<int> maxes = {kFixedMax};
    if (threads != kFixedMax) maxes.push_back(threads);
    for (int max : maxes) {
      register_one<ReservoirSubject, kFamily>(threads, max);
#ifdef RESERVOIR_BENCH_HAVE_SOCI
      register_one<SociSubject, kFamily>(threads, max);
#endif
#ifdef RESERVOIR_BENCH_HAVE_POCO
      register_one<PocoSubject, kFamily>(threads, max);
#endif
    }
  }
}

// Creates the database file and switches it to WAL (a setting stored in the file, so every
// later connection of every subject uses it).
void prepare_database() {
  reservoir::PoolOptions o;
  o.dsn = "sqlite://" + g_db_path;
  o.min = 1;
  o.max = 1;
  o.fail_fast = true;
  auto pool = reservoir::Pool::create(o);
  {
    auto c = pool->acquire();
    const auto mode = c->query("PRAGMA journal_mode=WAL")[0][0].as<std::string>();
    if (mode != "wal") throw std::runtime_error("journal_mode is " + mode + ", not wal");
    c->execute("CREATE TABLE IF NOT EXISTS bench(id INTEGER PRIMARY KEY)");
  }
  pool->close();
}

void remove_database() {
  std::error_code ec;
  for (const char* suffix : {"", "-wal", "-shm"}) std::filesystem::remove(g_db_path + suffix, ec);
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;

  g_db_path = (std::filesystem::temp_directory_path() /
               ("reservoir_pool_bench_" + std::to_string(::getpid()) + ".db"))
                  .string();
  remove_database();
  try {
    prepare_database();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pool_bench: cannot prepare %s: %s\n", g_db_path.c_str(), e.what());
    remove_database();
    return 1;
  }

  std::string subjects = "reservoir";
#ifdef RESERVOIR_BENCH_HAVE_SOCI
  subjects += ", soci";
#endif
#ifdef RESERVOIR_BENCH_HAVE_POCO
  subjects += ", poco";
#endif
  benchmark::AddCustomContext("subjects", subjects);
  benchmark::AddCustomContext("database", g_db_path + " (SQLite, WAL)");

  register_family<Family::cycle>();
  register_family<Family::cycle_latency>();
  register_family<Family::select1>();

  benchmark::RunSpecifiedBenchmarks();
  Fixture::clear();
  benchmark::Shutdown();
  remove_database();
  return 0;
}
