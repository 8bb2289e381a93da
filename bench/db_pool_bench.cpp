// bench/db_pool_bench.cpp: point queries on PostgreSQL or MariaDB (pgbench_accounts) through
// reservoir's pool, beside dedicated connections, connect-per-request, SOCI's connection_pool and
// Poco's SessionPool. Method and results: docs/benchmarks.md, "PostgreSQL point queries" and
// "MariaDB point queries". Run it with scripts/bench-pg or scripts/bench-mariadb.
//
// --db chooses the database (postgresql, the default, or mariadb); everything else is the same
// program. For every thread count N and subject, N threads loop {acquire; SELECT abalance FROM
// pgbench_accounts WHERE aid = <random 1..rows>; release}: --warmup seconds not counted, then
// --seconds counted; --rounds times, each with a fresh pool, the subjects' order rotating from
// round to round. Ratios and targets use each subject's best round (medians beside). Subjects:
//   reservoir   reservoir::Pool (min = max = --pool-size), `pool->acquire(); c->query(sql, key)`
//   persistent  one reservoir driver connection per thread, no pool (N <= pool size)
//   soci        soci::connection_pool (--pool-size sessions, postgresql or mysql backend)
//   poco        Poco::Data::SessionPool (min = max = --pool-size, PostgreSQL or MySQL connector);
//               get() throws when exhausted: counted as "exhausted" and retried after a yield
//   connect     connect-per-request through reservoir's driver: connect, query, close
// Every pool opens all its connections before the warm-up, so connects are not measured (except,
// by design, for `connect`).

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
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

#include "latency_histogram.hpp"
#include "reservoir/reservoir.hpp"

// RESERVOIR_BENCH_HAVE_SOCI: SOCI's core with at least one of the backends below;
// RESERVOIR_BENCH_HAVE_POCO: Poco Data with at least one of the connectors below.
#ifdef RESERVOIR_BENCH_HAVE_SOCI
// As in pool_bench.cpp: Debian's SOCI is configured with Boost, which only adds header-only
// binding of Fusion sequences that this file does not use.
#include <soci/soci-config.h>
#undef SOCI_HAVE_BOOST
#include <soci/connection-pool.h>
#include <soci/soci.h>
#ifdef RESERVOIR_BENCH_HAVE_SOCI_POSTGRESQL
#include <soci/postgresql/soci-postgresql.h>
#endif
#ifdef RESERVOIR_BENCH_HAVE_SOCI_MYSQL
#include <soci/mysql/soci-mysql.h>
#endif
#endif

#ifdef RESERVOIR_BENCH_HAVE_POCO
#include <Poco/Data/DataException.h>
#include <Poco/Data/Session.h>
#include <Poco/Data/SessionPool.h>
#include <Poco/Exception.h>
#ifdef RESERVOIR_BENCH_HAVE_POCO_POSTGRESQL
#include <Poco/Data/PostgreSQL/Connector.h>
#endif
#ifdef RESERVOIR_BENCH_HAVE_POCO_MYSQL
#include <Poco/Data/MySQL/Connector.h>
#endif
#endif

namespace {

using Clock = std::chrono::steady_clock;
using namespace std::chrono_literals;

constexpr const char* kProgram = "db_pool_bench";

// --- The databases -------------------------------------------------------------------------------

enum class Db { postgresql, mariadb };

// What differs between the databases; everything else in this file is shared.
struct Database {
  const char* name;     // the --db value, and the scheme of reservoir's driver
  const char* label;    // for the report
  const char* dsn_env;  // where the DSN comes from when --dsn is not given
  const char* server;   // what --server-pid names
  const char* sql;      // the statement in reservoir's placeholder syntax (also Poco's)
  const char* setup;    // how the data gets there, for the usage text
};

// SOCI uses its `:name` placeholders with every backend.
[[maybe_unused]] constexpr const char* kSqlColon =
    "SELECT abalance FROM pgbench_accounts WHERE aid = :aid";

constexpr Database kDatabases[] = {
    {"postgresql", "PostgreSQL", "RESERVOIR_PG_DSN", "the postmaster",
     "SELECT abalance FROM pgbench_accounts WHERE aid = $1",
     "(pgbench -i -s 1 for 100000 rows); scripts/bench-pg sets everything up"},
    {"mariadb", "MariaDB", "RESERVOIR_MARIADB_DSN", "mariadbd",
     "SELECT abalance FROM pgbench_accounts WHERE aid = ?",
     "(pgbench_accounts, 100000 rows); scripts/bench-mariadb sets everything up"},
};

struct Options {
  Db db = Db::postgresql;
  std::string dsn;
  double seconds = 1.0;  // counted, per round
  double warmup = 0.3;   // per round, not counted
  int rounds = 6;        // connect-per-request: at most kConnectRounds
  std::vector<int> threads = {4, 8, 16, 64};
  int pool_size = 8;
  std::int64_t rows = 100'000;
  std::set<std::string> subjects = {"reservoir", "persistent", "soci", "poco", "connect"};
  int server_pid = 0;      // the server (see server_cpu_seconds); 0: not measured
  double max_other = 0.1;  // cores of other load above which a round is left out (see Result)

  const Database& database() const { return kDatabases[static_cast<int>(db)]; }
};

// Connect-per-request is two orders of magnitude slower than everything else, so its ratio needs
// no precision: it runs in the first rounds only, to keep the whole run short.
constexpr int kConnectRounds = 2;

// Subject names; the index is the one main() switches on.
constexpr const char* kSubjects[] = {"reservoir", "persistent", "soci", "poco", "connect"};

// --- Latency recording -------------------------------------------------------------------------

using reservoir::bench::LatencyHistogram;  // bench/latency_histogram.hpp

// --- CPU accounting ----------------------------------------------------------------------------

// Where the two cores went during a counted window: this process (the client side of every
// subject), the server (when --server-pid names it: PostgreSQL's postmaster, whose children are
// the backends, or MariaDB's one mariadbd process) and the whole machine, so that load from
// anything else shows up too.
struct CpuSample {
  double client_s = 0;   // user + system of this process
  double server_s = -1;  // the server, its live children and its reaped children; -1: unknown
  double machine_s = 0;  // all CPUs busy (not idle, not iowait), from /proc/stat
};

double ticks_to_seconds(std::uint64_t ticks) {
  static const double hz = static_cast<double>(::sysconf(_SC_CLK_TCK));
  return static_cast<double>(ticks) / hz;
}

// Fields of /proc/<pid>/stat after the command name: [0] state, [1] ppid, ... [11] utime,
// [12] stime, [13] cutime, [14] cstime. False if the process is gone.
bool read_proc_stat(const std::string& pid, std::vector<std::string>& fields) {
  std::ifstream in("/proc/" + pid + "/stat");
  std::string line;
  if (!std::getline(in, line)) return false;
  const std::size_t close = line.rfind(')');  // the name may hold spaces and parentheses
  if (close == std::string::npos) return false;
  std::istringstream rest(line.substr(close + 1));
  fields.clear();
  for (std::string f; rest >> f && fields.size() < 15;) fields.push_back(f);
  return fields.size() == 15;
}

// The server's CPU: the server process's own (all its threads: mariadbd serves every connection
// on a thread of its own) and its reaped children's (cutime, cstime: so a PostgreSQL backend that
// ended inside the window still counts), plus every live child's. Taken again while a child has
// exited but is not reaped yet (state Z: it shows no CPU time of its own any more, nor is it in
// cutime yet) or was reaped during the scan (counted in neither place).
double server_cpu_seconds(int postmaster) {
  const std::string pm = std::to_string(postmaster);
  std::vector<std::string> f;
  auto own_and_reaped = [&]() -> std::int64_t {
    if (!read_proc_stat(pm, f)) return -1;
    return static_cast<std::int64_t>(std::stoull(f[11]) + std::stoull(f[12]) + std::stoull(f[13]) +
                                     std::stoull(f[14]));
  };
  std::uint64_t ticks = 0;
  for (int attempt = 0; attempt < 100; ++attempt) {
    const std::int64_t before = own_and_reaped();
    if (before < 0) return -1;
    ticks = static_cast<std::uint64_t>(before);
    bool zombie = false;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator("/proc", ec)) {
      const std::string name = entry.path().filename().string();
      if (name.empty() || !std::isdigit(static_cast<unsigned char>(name[0]))) continue;
      if (!read_proc_stat(name, f) || f[1] != pm) continue;
      if (f[0] == "Z") zombie = true;
      ticks += std::stoull(f[11]) + std::stoull(f[12]);
    }
    if (!zombie && own_and_reaped() == before) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  return ticks_to_seconds(ticks);
}

CpuSample sample_cpu(int server_pid) {
  CpuSample s;
  rusage u{};
  if (::getrusage(RUSAGE_SELF, &u) == 0) {
    s.client_s = static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
                 static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
  }
  if (server_pid > 0) s.server_s = server_cpu_seconds(server_pid);
  std::ifstream stat("/proc/stat");
  std::string cpu;
  std::uint64_t v[8] = {};  // user nice system idle iowait irq softirq steal
  if (stat >> cpu && cpu == "cpu") {
    for (auto& x : v) stat >> x;
    s.machine_s = ticks_to_seconds(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
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

std::shared_ptr<reservoir::Driver> database_driver(const Options& o) {
  auto driver = reservoir::find_driver(o.database().name);
  if (!driver) {
    throw std::runtime_error(std::string("reservoir was built without the ") + o.database().label +
                             " driver");
  }
  return driver;
}

struct ReservoirSubject {
  static constexpr const char* kName = "reservoir";
  struct Local : LocalBase {};

  explicit ReservoirSubject(const Options& o) : sql(o.database().sql) {
    reservoir::PoolOptions p;
    p.dsn = o.dsn;
    p.name = kProgram;
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
      std::fprintf(stderr, "%s: closing the reservoir pool: %s\n", kProgram, e.what());
    }
  }

  Local make_local() { return {}; }

  // Acquires so far, and how many of them had to wait; read outside the loop only.
  std::pair<std::uint64_t, std::uint64_t> acquires_and_waits() const {
    const reservoir::PoolStats s = pool->stats();
    return {s.acquires, s.waits};
  }

  std::int64_t query(Local&, std::int64_t key) {
    auto c = pool->acquire();
    return single_value(c->query(sql, key));
  }

  const char* sql;
  std::shared_ptr<reservoir::Pool> pool;
};

// The limit: each thread owns a connection, so there is no pool and no waiting.
struct PersistentSubject {
  static constexpr const char* kName = "persistent";
  struct Local : LocalBase {
    std::unique_ptr<reservoir::Connection> conn;
  };

  explicit PersistentSubject(const Options& o)
      : driver(database_driver(o)), dsn(reservoir::Dsn::parse(o.dsn)), sql(o.database().sql) {}

  Local make_local() {
    Local l;
    l.conn = driver->connect(dsn, 10s);
    return l;
  }

  std::int64_t query(Local& l, std::int64_t key) {
    if (!l.conn || l.conn->broken()) l.conn = driver->connect(dsn, 10s);
    return single_value(l.conn->query(sql, key));
  }

  std::shared_ptr<reservoir::Driver> driver;
  reservoir::Dsn dsn;
  const char* sql;
};

// What a pool saves: every request opens (TCP, authentication; on PostgreSQL a new server
// process) and closes its own connection.
struct ConnectSubject {
  static constexpr const char* kName = "connect";
  struct Local : LocalBase {};

  explicit ConnectSubject(const Options& o)
      : driver(database_driver(o)), dsn(reservoir::Dsn::parse(o.dsn)), sql(o.database().sql) {}

  Local make_local() { return {}; }

  std::int64_t query(Local&, std::int64_t key) {
    const auto conn = driver->connect(dsn, 10s);
    return single_value(conn->query(sql, key));
  }

  std::shared_ptr<reservoir::Driver> driver;
  reservoir::Dsn dsn;
  const char* sql;
};

// libpq keyword/value form of the DSN, for SOCI and Poco on PostgreSQL.
[[maybe_unused]] std::string libpq_conninfo(const std::string& dsn_text) {
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

// The DSN as `key=value` pairs joined by `separator`, for SOCI's MySQL backend (" ") and Poco's
// MySQL connector (";"). Neither has a quoting rule to rely on, so values holding a separator,
// a quote or '=' are refused (the fixture's are plain: its passwords are hex).
[[maybe_unused]] std::string mysql_pairs(const std::string& dsn_text, char separator) {
  const reservoir::Dsn d = reservoir::Dsn::parse(dsn_text);
  std::string s;
  auto add = [&](const char* key, const std::string& value) {
    if (value.empty()) return;
    if (value.find_first_of(std::string(" ;='\"") + separator) != std::string::npos) {
      throw std::runtime_error(std::string("DSN value for ") + key + " holds " +
                               "characters SOCI or Poco cannot take");
    }
    if (!s.empty()) s += separator;
    s += key;
    s += '=';
    s += value;
  };
  add("host", d.host);
  add("port", d.port != 0 ? std::to_string(d.port) : std::string());
  add("db", d.database);
  add("user", d.user);
  add("password", d.password);
  return s;
}

#ifdef RESERVOIR_BENCH_HAVE_SOCI
// SOCI's backend for a database and its connect string; nullptr if that backend was not found.
const soci::backend_factory* soci_backend(Db db) {
  switch (db) {
    case Db::postgresql:
#ifdef RESERVOIR_BENCH_HAVE_SOCI_POSTGRESQL
      return &soci::postgresql;
#else
      return nullptr;
#endif
    case Db::mariadb:
#ifdef RESERVOIR_BENCH_HAVE_SOCI_MYSQL
      return &soci::mysql;
#else
      return nullptr;
#endif
  }
  return nullptr;
}

std::string soci_connect_string(const Options& o) {
  return o.db == Db::postgresql ? libpq_conninfo(o.dsn) : mysql_pairs(o.dsn, ' ');
}

struct SociSubject {
  static constexpr const char* kName = "soci";
  struct Local : LocalBase {};

  explicit SociSubject(const Options& o) : pool(static_cast<std::size_t>(o.pool_size)) {
    const soci::backend_factory* backend = soci_backend(o.db);
    if (backend == nullptr) throw std::runtime_error("SOCI was built without this backend");
    const std::string connect = soci_connect_string(o);
    for (int i = 0; i < o.pool_size; ++i)
      pool.at(static_cast<std::size_t>(i)).open(*backend, connect);
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

[[maybe_unused]] bool soci_available(Db db) {
#ifdef RESERVOIR_BENCH_HAVE_SOCI
  return soci_backend(db) != nullptr;
#else
  (void)db;
  return false;
#endif
}

#ifdef RESERVOIR_BENCH_HAVE_POCO
// Registers Poco's connector for a database (once) and returns its key; empty if that connector
// was not found.
std::string poco_connector(Db db) {
  static std::once_flag once[std::size(kDatabases)];
  switch (db) {
    case Db::postgresql:
#ifdef RESERVOIR_BENCH_HAVE_POCO_POSTGRESQL
      std::call_once(once[0], [] { Poco::Data::PostgreSQL::Connector::registerConnector(); });
      return Poco::Data::PostgreSQL::Connector::KEY;
#else
      return {};
#endif
    case Db::mariadb:
#ifdef RESERVOIR_BENCH_HAVE_POCO_MYSQL
      std::call_once(once[1], [] { Poco::Data::MySQL::Connector::registerConnector(); });
      return Poco::Data::MySQL::Connector::KEY;
#else
      return {};
#endif
  }
  return {};
}

std::string poco_connect_string(const Options& o) {
  if (o.db == Db::postgresql) return libpq_conninfo(o.dsn);
  return mysql_pairs(o.dsn, ';') + ";compress=false;auto-reconnect=false";
}

std::string poco_connector_or_throw(Db db) {
  std::string key = poco_connector(db);
  if (key.empty()) throw std::runtime_error("Poco was built without this connector");
  return key;
}

struct PocoSubject {
  static constexpr const char* kName = "poco";
  struct Local : LocalBase {};

  explicit PocoSubject(const Options& o)
      : sql(o.database().sql),
        pool(poco_connector_or_throw(o.db), poco_connect_string(o), o.pool_size, o.pool_size) {
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
      s << sql, into(balance), use(aid), now;
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

  std::string sql;
  Poco::Data::SessionPool pool;
};
#endif

[[maybe_unused]] bool poco_available(Db db) {
#ifdef RESERVOIR_BENCH_HAVE_POCO
  return !poco_connector(db).empty();
#else
  (void)db;
  return false;
#endif
}

// --- The timing loop -----------------------------------------------------------------------------

// One counted window of one subject at one thread count.
struct Round {
  bool ran = false;
  std::string note;  // why it did not run, or the first error
  double seconds = 0;
  std::uint64_t queries = 0;  // successful, inside the counted window
  std::uint64_t errors = 0;   // warm-up and counted window together
  std::uint64_t exhausted = 0;
  LatencyHistogram latency;
  CpuSample cpu;  // deltas over the counted window
  // reservoir only: acquires in the counted window and how many of them waited.
  std::uint64_t acquires = 0, waits = 0;

  double qps() const { return seconds > 0 ? static_cast<double>(queries) / seconds : 0; }
  // Cores busy with neither this process nor the server during the window: other programs
  // (and softirq work, which is near 0 on a quiet machine).
  double other_cores() const {
    if (seconds <= 0) return 0;
    return std::max(0.0, cpu.machine_s - cpu.client_s - std::max(0.0, cpu.server_s)) / seconds;
  }
};

struct alignas(64) ThreadRecord {
  std::uint64_t queries = 0;
  std::uint64_t errors = 0;
  std::uint64_t exhausted = 0;
  std::string first_error;
  LatencyHistogram latency;
};

enum Phase : int { kWarmup, kCounted, kStop };

// A small, fast generator per thread (xorshift64*), so that the client's share of the two
// cores stays as small as possible.
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

// Sets the subject up (opening its pool), starts n threads, lets them run for the warm-up, then
// counts for o.seconds. Each thread makes its Local before the warm-up starts.
template <class Subject>
Round run_round(const Options& o, int n, std::uint64_t seed) {
  Round r;
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
      KeyGenerator keys(seed * 1000 + static_cast<std::uint64_t>(t) + 1);
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
      // pgbench -i (and scripts/bench-mariadb's load) sets every abalance to 0; anything else
      // means the wrong data was read.
      if (sink != 0) fail("abalance is not 0: not the data of a fresh pgbench -i");
    });
  }

  constexpr bool kCountsWaits = requires(const Subject& x) { x.acquires_and_waits(); };
  std::pair<std::uint64_t, std::uint64_t> waits0{}, waits1{};
  ready.arrive_and_wait();
  std::this_thread::sleep_for(std::chrono::duration<double>(o.warmup));
  if constexpr (kCountsWaits) waits0 = subject->acquires_and_waits();
  const CpuSample cpu0 = sample_cpu(o.server_pid);
  const auto t0 = Clock::now();
  phase.store(kCounted, std::memory_order_release);
  std::this_thread::sleep_for(std::chrono::duration<double>(o.seconds));
  phase.store(kStop, std::memory_order_release);
  const auto t1 = Clock::now();
  const CpuSample cpu1 = sample_cpu(o.server_pid);
  if constexpr (kCountsWaits) waits1 = subject->acquires_and_waits();
  workers.clear();  // joins
  r.acquires = waits1.first - waits0.first;
  r.waits = waits1.second - waits0.second;

  for (const ThreadRecord& rec : records) {
    r.queries += rec.queries;
    r.errors += rec.errors;
    r.exhausted += rec.exhausted;
    r.latency.merge(rec.latency);
    if (r.note.empty() && !rec.first_error.empty()) r.note = rec.first_error;
  }
  r.ran = true;
  r.seconds = std::chrono::duration<double>(t1 - t0).count();
  r.cpu.client_s = cpu1.client_s - cpu0.client_s;
  r.cpu.server_s = cpu0.server_s >= 0 && cpu1.server_s >= 0 ? cpu1.server_s - cpu0.server_s : -1;
  r.cpu.machine_s = cpu1.machine_s - cpu0.machine_s;
  return r;
}

// --- Results -------------------------------------------------------------------------------------

// All rounds of one subject at one thread count.
struct Result {
  std::string subject;
  int threads = 0;
  double max_other = 0;  // rounds with more other load than this are left out (see used())
  std::vector<Round> rounds;

  // The rounds the results come from: those that ran undisturbed by other programs (other load
  // at most max_other cores) when there are at least two, otherwise all that ran.
  std::vector<const Round*> used() const {
    std::vector<const Round*> quiet, all;
    for (const Round& r : rounds) {
      if (!r.ran) continue;
      all.push_back(&r);
      if (r.other_cores() <= max_other) quiet.push_back(&r);
    }
    return quiet.size() >= 2 ? quiet : all;
  }
  // Queries/s of the used rounds, slowest first.
  std::vector<double> rates() const {
    std::vector<double> out;
    for (const Round* r : used()) out.push_back(r->qps());
    std::ranges::sort(out);
    return out;
  }
  // The fastest round: what the configuration reaches when the scheduler does not get in the
  // way (see docs/benchmarks.md for why rounds of one configuration differ by up to 2x here).
  double best() const {
    const auto v = rates();
    return v.empty() ? 0 : v.back();
  }
  double median() const {
    const auto v = rates();
    if (v.empty()) return 0;
    return v.size() % 2 == 1 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
  }
  bool ran() const { return best() > 0; }
  // Errors of all rounds, used or not, warm-up included.
  std::uint64_t errors() const {
    std::uint64_t n = 0;
    for (const Round& r : rounds) n += r.errors;
    return n;
  }
};

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

std::string us(std::uint64_t ns) { return fixed(static_cast<double>(ns) / 1e3, 0); }

void print_round(const Result& res, std::size_t index) {
  const Round& r = res.rounds[index];
  std::fprintf(stderr, "%s: N=%-3d %-10s round %zu: ", kProgram, res.threads, res.subject.c_str(),
               index + 1);
  if (!r.ran) {
    std::fprintf(stderr, "not run: %s\n", r.note.c_str());
    return;
  }
  const double q = std::max<double>(1.0, static_cast<double>(r.queries));
  std::fprintf(stderr,
               "%9.0f queries/s, %llu errors, CPU us/query client %.1f server %.1f, other load "
               "%.2f cores%s%s\n",
               r.qps(), static_cast<unsigned long long>(r.errors), r.cpu.client_s / q * 1e6,
               r.cpu.server_s / q * 1e6, r.other_cores(), r.note.empty() ? "" : ": ",
               r.note.c_str());
}

void print_result(const Result& res) {
  if (!res.ran()) {
    const std::string note = res.rounds.empty() ? "" : res.rounds.front().note;
    std::printf("| %3d | %-10s | not run: %s |\n", res.threads, res.subject.c_str(), note.c_str());
    return;
  }
  LatencyHistogram latency;
  double client_s = 0;
  double server_s = 0;  // over the rounds where the server's CPU time is known
  std::uint64_t server_queries = 0;
  double seconds = 0;
  std::uint64_t queries = 0, exhausted = 0, acquires = 0, waits = 0;
  std::string note;
  const auto used = res.used();
  for (const Round* r : used) {
    acquires += r->acquires;
    waits += r->waits;
    latency.merge(r->latency);
    seconds += r->seconds;
    queries += r->queries;
    exhausted += r->exhausted;
    client_s += r->cpu.client_s;
    if (r->cpu.server_s >= 0) {
      server_s += r->cpu.server_s;
      server_queries += r->queries;
    }
  }
  for (const Round& r : res.rounds) {
    if (note.empty()) note = r.note;  // the first error of any round
  }
  const auto rates = res.rates();
  std::size_t ran = 0;
  for (const Round& r : res.rounds) ran += r.ran ? 1 : 0;
  // CPU per query in microseconds: this process and the server; "other": the rest of the
  // machine's busy time, in cores.
  const double q = std::max<double>(1.0, static_cast<double>(queries));
  const bool server_known = server_queries > 0;
  double other = 0;
  for (const Round* r : used) other += r->other_cores() * r->seconds;
  other /= seconds;
  if (note.size() > 80) note = note.substr(0, 80) + "...";
  if (acquires > 0) {
    note = fixed(100.0 * static_cast<double>(waits) / static_cast<double>(acquires), 1) +
           "% of acquires waited" + (note.empty() ? "" : "; " + note);
  }
  const std::string rounds = std::to_string(used.size()) + "/" + std::to_string(ran);
  std::printf(
      "| %3d | %-10s | %9s | %9s | %9s | %6s | %6llu | %9llu | %6s | %6s | %8s | %6s | %6s | %5s "
      "| %s |\n",
      res.threads, res.subject.c_str(), fixed(res.best(), 0).c_str(),
      fixed(res.median(), 0).c_str(), fixed(rates.front(), 0).c_str(), rounds.c_str(),
      static_cast<unsigned long long>(res.errors()), static_cast<unsigned long long>(exhausted),
      us(latency.percentile_ns(0.5)).c_str(), us(latency.percentile_ns(0.99)).c_str(),
      us(latency.max_ns()).c_str(), fixed(client_s / q * 1e6, 1).c_str(),
      server_known ? fixed(server_s / static_cast<double>(server_queries) * 1e6, 1).c_str() : "-",
      fixed(other, 2).c_str(), note.c_str());
}

struct Target {
  std::string what;
  double best;    // ratio of the best rounds; 0: not measured
  double median;  // ratio of the medians
  double goal;
};

void report(const Options& o, const std::vector<Result>& results) {
  std::printf(
      "\nbest, median, slowest: queries/s of the fastest, the median and the slowest round used.\n"
      "rounds: rounds used / rounds run; a round with more than %.2f cores of other load (other\n"
      "programs on the machine) is left out while two or more undisturbed ones remain. errors:\n"
      "all rounds, warm-up included. exhausted: Poco's failed get()s (each retried). Latency:\n"
      "acquire + query + release in microseconds. client, server: CPU microseconds per query in\n"
      "this process and in the %s server. other: cores busy with anything else.\n\n"
      "|   N | subject    |      best |    median |   slowest | rounds | errors | exhausted | "
      "p50 us | p99 us |   max us | client | server | other | note |\n"
      "|----:|------------|----------:|----------:|----------:|-------:|-------:|----------:|"
      "-------:|-------:|---------:|-------:|-------:|------:|------|\n",
      o.max_other, o.database().label);
  for (const Result& r : results) print_result(r);

  auto find = [&](const char* subject, int n) -> const Result* {
    for (const auto& r : results) {
      if (r.subject == subject && r.threads == n && r.ran()) return &r;
    }
    return nullptr;
  };
  struct Ratio {
    double best = 0, median = 0;
  };
  auto ratio = [&](const Result* a, const Result* b) {
    if (a == nullptr || b == nullptr || b->median() <= 0) return Ratio{};
    return Ratio{a->best() / b->best(), a->median() / b->median()};
  };
  auto cell = [](Ratio x, int decimals) {
    return x.best > 0 ? fixed(x.best, decimals) + "x (" + fixed(x.median, decimals) + "x)"
                      : std::string("-");
  };

  std::printf(
      "\nRatios: reservoir's best round over the other's best round (in parentheses: median over "
      "median):\n\n"
      "| N   | reservoir best q/s | / persistent      | / SOCI        | / Poco        | "
      "/ connect-per-request |\n"
      "|----:|-------------------:|------------------:|--------------:|--------------:|"
      "---------------------:|\n");
  std::vector<Target> targets;
  for (int n : o.threads) {
    const Result* res = find("reservoir", n);
    const Ratio p = ratio(res, find("persistent", n));
    const Ratio s = ratio(res, find("soci", n));
    const Ratio k = ratio(res, find("poco", n));
    const Ratio c = ratio(res, find("connect", n));
    std::printf("| %3d | %18s | %17s | %13s | %13s | %20s |\n", n,
                res != nullptr ? fixed(res->best(), 0).c_str() : "-", cell(p, 3).c_str(),
                cell(s, 2).c_str(), cell(k, 2).c_str(), cell(c, 0).c_str());
    const std::string at = " at N=" + std::to_string(n);
    if (n == o.pool_size && o.subjects.contains("persistent")) {
      targets.push_back({"reservoir >= 0.97x persistent" + at, p.best, p.median, 0.97});
    }
    if (o.subjects.contains("soci")) {
      targets.push_back({"reservoir >= 1.15x SOCI" + at, s.best, s.median, 1.15});
    }
    if (o.subjects.contains("poco")) {
      targets.push_back({"reservoir >= 2.5x Poco" + at, k.best, k.median, 2.5});
    }
    if (o.subjects.contains("connect")) {
      targets.push_back({"reservoir >= 150x connect-per-request" + at, c.best, c.median, 150});
    }
  }

  std::printf("\nTargets (verdict on the best rounds; medians beside):\n\n");
  for (const Target& t : targets) {
    if (t.best == 0) {
      std::printf("- %-44s NOT MEASURED\n", t.what.c_str());
      continue;
    }
    std::printf("- %-44s %9sx  %-6s  (median %sx: %s)\n", t.what.c_str(), fixed(t.best, 3).c_str(),
                t.best >= t.goal ? "met" : "MISSED", fixed(t.median, 3).c_str(),
                t.median >= t.goal ? "met" : "missed");
  }
  std::uint64_t reservoir_errors = 0;
  bool reservoir_ran = false;
  for (const auto& r : results) {
    if (r.subject == "reservoir") {
      reservoir_errors += r.errors();
      reservoir_ran = reservoir_ran || r.ran();
    }
  }
  if (reservoir_ran) {
    std::printf("- %-44s %9llu   %s\n", "no errors from reservoir at any N",
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
      "usage: db_pool_bench [--db postgresql|mariadb]\n"
      "                     [--dsn postgresql://user:pw@127.0.0.1:PORT/db] [--seconds 1]\n"
      "                     [--warmup 0.3] [--rounds 6] [--threads 4,8,16,64] [--pool-size 8]\n"
      "                     [--rows 100000] [--subjects reservoir,persistent,soci,poco,connect]\n"
      "                     [--server-pid SERVER_PID] [--max-other-load 0.1]\n"
      "Per thread count, each subject runs --rounds times (connect at most 2), the order "
      "rotating,\n"
      "each time with a fresh pool: --warmup seconds not counted, then --seconds counted. Ratios\n"
      "and targets use the best round of each subject; medians are shown beside them. Rounds\n"
      "with more than --max-other-load cores used by other programs are left out while two or\n"
      "more undisturbed ones remain (--server-pid names the server, so that the server's\n"
      "CPU is not taken for other load: PostgreSQL's postmaster, or mariadbd).\n"
      "--db postgresql (the default): the DSN defaults to $RESERVOIR_PG_DSN. The database must\n"
      "hold pgbench's tables (pgbench -i -s 1 for 100000 rows); scripts/bench-pg sets everything\n"
      "up. --db mariadb: the DSN (mariadb://...) defaults to $RESERVOIR_MARIADB_DSN; the table\n"
      "pgbench_accounts(aid, bid, abalance, filler) with rows 1..100000 and abalance 0;\n"
      "scripts/bench-mariadb sets everything up.\n");
  std::exit(status);
}

Options parse_options(int argc, char** argv) {
  Options o;
  bool dsn_given = false;
  for (int i = 1; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") usage(0);
    if (i + 1 >= argc) usage(2);
    const std::string value = argv[++i];
    try {
      if (arg == "--dsn") {
        o.dsn = value;
        dsn_given = true;
      } else if (arg == "--db") {
        const auto* db =
            std::ranges::find_if(kDatabases, [&](const Database& d) { return value == d.name; });
        if (db == std::end(kDatabases)) {
          std::fprintf(stderr, "%s: unknown database %s (postgresql or mariadb)\n", kProgram,
                       value.c_str());
          std::exit(2);
        }
        o.db = static_cast<Db>(db - std::begin(kDatabases));
      } else if (arg == "--seconds") {
        o.seconds = std::stod(value);
      } else if (arg == "--warmup") {
        o.warmup = std::stod(value);
      } else if (arg == "--rounds") {
        o.rounds = std::stoi(value);
      } else if (arg == "--pool-size") {
        o.pool_size = std::stoi(value);
      } else if (arg == "--rows") {
        o.rows = std::stoll(value);
      } else if (arg == "--max-other-load") {
        o.max_other = std::stod(value);
      } else if (arg == "--server-pid") {
        o.server_pid = std::stoi(value);
      } else if (arg == "--threads") {
        o.threads.clear();
        for (const auto& t : split(value)) o.threads.push_back(std::stoi(t));
      } else if (arg == "--subjects") {
        o.subjects.clear();
        for (const auto& s : split(value)) {
          if (std::ranges::find(kSubjects, s) == std::end(kSubjects)) {
            std::fprintf(stderr, "%s: unknown subject %s\n", kProgram, s.c_str());
            std::exit(2);
          }
          o.subjects.insert(s);
        }
      } else {
        usage(2);
      }
    } catch (const std::logic_error&) {  // stoi and friends
      std::fprintf(stderr, "%s: bad value for %s: %s\n", kProgram, arg.c_str(), value.c_str());
      std::exit(2);
    }
  }
  if (!dsn_given) {
    if (const char* env = std::getenv(o.database().dsn_env)) o.dsn = env;
  }
  if (o.dsn.empty()) {
    std::fprintf(stderr, "%s: no DSN (--dsn or %s)\n", kProgram, o.database().dsn_env);
    usage(2);
  }
  if (o.seconds <= 0 || o.warmup < 0 || o.rounds < 1 || o.pool_size < 1 || o.rows < 1 ||
      o.threads.empty() ||
      std::ranges::any_of(o.threads, [](int t) { return t < 1 || t > 1024; })) {
    std::fprintf(stderr, "%s: --seconds, --rounds, --pool-size, --rows or --threads out of range\n",
                 kProgram);
    std::exit(2);
  }
  return o;
}

template <class Subject>
void add_round(const Options& o, Result& res, int n, std::size_t round) {
  res.rounds.push_back(run_round<Subject>(o, n, round));
  print_round(res, res.rounds.size() - 1);
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = parse_options(argc, argv);
  std::string redacted;
  try {
    const reservoir::Dsn dsn = reservoir::Dsn::parse(o.dsn);
    redacted = dsn.redacted();
    if (dsn.scheme != o.database().name) {
      std::fprintf(stderr, "%s: --db %s but the DSN is %s\n", kProgram, o.database().name,
                   redacted.c_str());
      return 2;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: %s\n", kProgram, e.what());
    return 2;
  }

  std::printf(
      "%s: %s; pool size %d; per thread count and subject %d round(s) of %.1f s "
      "warm-up + %.1f s counted; keys 1..%lld; %u hardware threads\n",
      kProgram, redacted.c_str(), o.pool_size, o.rounds, o.warmup, o.seconds,
      static_cast<long long>(o.rows), std::thread::hardware_concurrency());
  if (!soci_available(o.db)) {
    std::printf("%s: built without SOCI's %s backend: soci left out\n", kProgram,
                o.db == Db::postgresql ? "postgresql" : "mysql");
  }
  if (!poco_available(o.db)) {
    std::printf("%s: built without Poco's %s: poco left out\n", kProgram,
                o.db == Db::postgresql ? "DataPostgreSQL" : "DataMySQL");
  }
  std::fflush(stdout);

  std::vector<Result> results;
  for (int n : o.threads) {
    // The subjects that run at this thread count, in the order of kSubjects. Dedicated
    // connections are the limit only while they need no more connections than the pool has.
    std::vector<std::size_t> order;
    for (std::size_t s = 0; s < std::size(kSubjects); ++s) {
      const std::string name = kSubjects[s];
      if (!o.subjects.contains(name)) continue;
      if (name == "persistent" && n > o.pool_size) continue;
      if (name == "soci" && !soci_available(o.db)) continue;
      if (name == "poco" && !poco_available(o.db)) continue;
      order.push_back(s);
    }
    const std::size_t first = results.size();
    for (const std::size_t s : order) results.push_back(Result{kSubjects[s], n, o.max_other, {}});
    // Each round runs every subject once, starting one subject later than the round before, so
    // that no subject always runs right after the same neighbour.
    for (int round = 0; round < o.rounds; ++round) {
      for (std::size_t i = 0; i < order.size(); ++i) {
        const std::size_t k = (i + static_cast<std::size_t>(round)) % order.size();
        Result& res = results[first + k];
        const auto r = static_cast<std::size_t>(round);
        if (order[k] == 4 && round >= kConnectRounds) continue;
        switch (order[k]) {
          case 0:
            add_round<ReservoirSubject>(o, res, n, r);
            break;
          case 1:
            add_round<PersistentSubject>(o, res, n, r);
            break;
#ifdef RESERVOIR_BENCH_HAVE_SOCI
          case 2:
            add_round<SociSubject>(o, res, n, r);
            break;
#endif
#ifdef RESERVOIR_BENCH_HAVE_POCO
          case 3:
            add_round<PocoSubject>(o, res, n, r);
            break;
#endif
          case 4:
            add_round<ConnectSubject>(o, res, n, r);
            break;
          default:
            break;
        }
      }
    }
  }
  report(o, results);
  return 0;
}
