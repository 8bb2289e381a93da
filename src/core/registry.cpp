// src/core/registry.cpp: the process-wide registry of named pools and of pools shared per
// database instance (reservoir/registry.hpp), with linger timers on the background threads.
//
// Locking: one mutex (Registry::mutex_) guards both maps, every SharedEntry's mutable fields and
// the limits. Nothing that can run user code happens under it: Pool::create(), Pool::close(), the
// last reference to a Pool (its destructor closes connections through the driver) and log hooks
// all run after it is released. Objects that might hold the last reference to a Pool are moved
// into a Graveyard declared before the lock, so they die after the unlock.
#include "reservoir/registry.hpp"

#include <algorithm>
#include <condition_variable>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <utility>

#include "core/background.hpp"
#include "core/options_check.hpp"
#include "core/registry_hooks.hpp"
#include "reservoir/dsn.hpp"
#include "reservoir/error.hpp"

namespace reservoir {

namespace core {

namespace {

using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

char ascii_upper(char c) noexcept {
  return c >= 'a' && c <= 'z' ? static_cast<char>(c - 'a' + 'A') : c;
}

std::string_view trim(std::string_view s) noexcept {
  auto space = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && space(s.front())) s.remove_prefix(1);
  while (!s.empty() && space(s.back())) s.remove_suffix(1);
  return s;
}

// The rule Dsn::redacted() masks by: libpq's ?password=/?sslpassword=, ODBC's PWD= and friends.
bool is_secret_key(std::string_view key) {
  std::string k(trim(key));
  for (char& c : k) c = ascii_upper(c);
  return k == "PWD" || k == "PASSWD" || k.find("PASSWORD") != std::string::npos;
}

// What identifies a database instance: connections to the same one may share a pool.
struct InstanceKey {
  std::string scheme;
  std::string user;
  std::string host;
  std::uint16_t port = 0;
  std::string database;  // sqlite: the absolute path; odbc: the normalised connection string
  auto operator<=>(const InstanceKey&) const = default;
};

// The settings of PoolOptions that a later shared_pool() caller is warned about when they differ
// from the first caller's.
struct Settings {
  std::uint32_t min = 0;
  std::uint32_t max = 0;
  std::uint32_t increment = 0;
  GetMode get_mode = GetMode::timed_wait;
  milliseconds wait_timeout{0};
  milliseconds connect_timeout{0};
  milliseconds ping_interval{0};
  milliseconds idle_timeout{0};
  milliseconds max_lifetime{0};
  bool reset_on_release = false;
  bool homogeneous = true;
  std::string secret;                         // password and secret parameters; never shown
  std::map<std::string, std::string> params;  // the other DSN parameters
};

struct Instance {
  InstanceKey key;
  std::string display;  // for messages: the key as a DSN, without any password
  Settings settings;
};

// An ODBC connection string as "KEY=value;" attributes without the secret ones, names upper-cased
// and sorted (the driver manager treats names case-insensitively and in any order); the secret
// ones go to `secret`.
std::string normalise_odbc(std::string_view cs, std::string& secret) {
  std::map<std::string, std::string> attributes;
  std::size_t i = 0;
  while (i < cs.size()) {
    const std::size_t eq = cs.find('=', i);
    const std::size_t semi = cs.find(';', i);
    if (eq == std::string_view::npos || (semi != std::string_view::npos && semi < eq)) {
      const std::size_t end = semi == std::string_view::npos ? cs.size() : semi;
      const std::string_view bare = trim(cs.substr(i, end - i));
      std::string name(bare);
      for (char& c : name) c = ascii_upper(c);
      if (!name.empty()) attributes.emplace(std::move(name), std::string());
      i = end + 1;
      continue;
    }
    std::string name(trim(cs.substr(i, eq - i)));
    for (char& c : name) c = ascii_upper(c);
    // A braced value may hold ';' and '=' and writes '}' as "}}": the attribute ends at the first
    // ';' after its closing brace.
    std::size_t j = eq + 1;
    while (j < cs.size() && (cs[j] == ' ' || cs[j] == '\t')) ++j;
    std::size_t scan_from = j;
    if (j < cs.size() && cs[j] == '{') {
      std::size_t k = j + 1;
      while (k < cs.size()) {
        if (cs[k] == '}') {
          if (k + 1 < cs.size() && cs[k + 1] == '}') {
            k += 2;
            continue;
          }
          break;
        }
        ++k;
      }
      scan_from = std::min(k + 1, cs.size());
    }
    std::size_t next = cs.find(';', scan_from);
    if (next == std::string_view::npos) next = cs.size();
    const std::string value(trim(cs.substr(eq + 1, next - eq - 1)));
    if (is_secret_key(name)) {
      secret += name + '=' + value + '\0';
    } else if (!name.empty()) {
      attributes[name] = value;
    }
    i = next + 1;
  }
  std::string out;
  for (const auto& [name, value] : attributes) {
    out += name;
    if (!value.empty()) out += '=' + value;
    out += ';';
  }
  return out;
}

Instance describe(const PoolOptions& o, const Dsn& dsn) {
  Instance in;
  Settings& s = in.settings;
  s.min = o.min;
  s.max = o.max;
  s.increment = o.increment;
  s.get_mode = o.get_mode;
  s.wait_timeout = o.wait_timeout;
  s.connect_timeout = o.connect_timeout;
  s.ping_interval = o.ping_interval;
  s.idle_timeout = o.idle_timeout;
  s.max_lifetime = o.max_lifetime;
  s.reset_on_release = o.reset_on_release;
  s.homogeneous = o.homogeneous;
  s.secret = dsn.password + '\0';
  for (const auto& [key, value] : dsn.params) {
    if (is_secret_key(key)) {
      s.secret += key + '=' + value + '\0';
    } else {
      s.params[key] = value;
    }
  }

  InstanceKey& k = in.key;
  k.scheme = dsn.scheme;
  if (dsn.scheme == "odbc") {
    k.database = normalise_odbc(dsn.connection_string, s.secret);
    in.display = "odbc:" + k.database;
  } else if (dsn.scheme == "sqlite") {
    // The same file reached through different relative paths is one database; the process's
    // working directory is what SQLite resolves a relative path against too.
    k.database = dsn.database;
    if (dsn.database != ":memory:") {
      std::error_code ec;
      const auto path = std::filesystem::absolute(dsn.database, ec);
      if (!ec) k.database = path.lexically_normal().string();
    }
    in.display = "sqlite://" + k.database;
  } else {
    k.user = dsn.user;
    k.host = dsn.host;
    k.port = dsn.port;
    k.database = dsn.database;
    // "db1/shop" and "db1:5432/shop" are one server. A multi-host list keeps its ports inside.
    if (k.port == 0 && k.host.find(',') == std::string::npos) {
      if (k.scheme == "postgresql") k.port = 5432;
      if (k.scheme == "mariadb") k.port = 3306;
    }
    in.display = k.scheme + "://" + (k.user.empty() ? "" : k.user + "@") + k.host +
                 (k.port != 0 ? ":" + std::to_string(k.port) : "") +
                 (k.database.empty() ? "" : "/" + k.database);
  }
  return in;
}

std::string ms_text(milliseconds d) { return std::to_string(d.count()) + " ms"; }

// The fields in which `mine` differs from the pool's, e.g. "max (pool 10, requested 20),
// password"; empty when they agree. Never shows a secret.
std::string differences(const Settings& pool, const Settings& mine) {
  std::string out;
  auto add = [&](const char* field, const std::string& a, const std::string& b) {
    if (a == b) return;
    if (!out.empty()) out += ", ";
    out += std::string(field) + " (pool " + a + ", requested " + b + ")";
  };
  auto num = [](std::uint32_t v) { return std::to_string(v); };
  auto flag = [](bool v) { return std::string(v ? "true" : "false"); };
  add("min", num(pool.min), num(mine.min));
  add("max", num(pool.max), num(mine.max));
  add("increment", num(pool.increment), num(mine.increment));
  add("get_mode", to_string(pool.get_mode), to_string(mine.get_mode));
  add("wait_timeout", ms_text(pool.wait_timeout), ms_text(mine.wait_timeout));
  add("connect_timeout", ms_text(pool.connect_timeout), ms_text(mine.connect_timeout));
  add("ping_interval", ms_text(pool.ping_interval), ms_text(mine.ping_interval));
  add("idle_timeout", ms_text(pool.idle_timeout), ms_text(mine.idle_timeout));
  add("max_lifetime", ms_text(pool.max_lifetime), ms_text(mine.max_lifetime));
  add("reset_on_release", flag(pool.reset_on_release), flag(mine.reset_on_release));
  add("homogeneous", flag(pool.homogeneous), flag(mine.homogeneous));
  if (pool.secret != mine.secret) out += out.empty() ? "password" : ", password";
  if (pool.params != mine.params) {
    out += out.empty() ? "dsn parameters" : ", dsn parameters";
  }
  return out;
}

void log_to(const LogHook& hook, LogLevel level, const std::string& message) noexcept {
  if (!hook) return;
  try {
    hook(level, message);
  } catch (...) {
    // Log hooks must not throw (reservoir/log.hpp); one that does loses its message, nothing more.
  }
}

// Closes a shared pool that nobody holds a handle on any more. A lease can still be out: it was
// taken through a handle that is gone, and has been held through a whole linger time. That is a
// leak or a bug; waiting for it would keep the pool's connections open for a pool nobody can
// reach, so the lease is revoked (its next use throws pool_closed; its connection is closed when
// it ends, never under the thread using it) and the pool's log hook is told.
void close_retired(const std::shared_ptr<Pool>& pool, const std::string& display,
                   const char* why) noexcept {
  try {
    pool->close(false);
    return;
  } catch (const Error& e) {
    if (e.code() != ErrorCode::pool_busy) return;
  } catch (...) {
    return;
  }
  try {
    log_to(pool->options().log, LogLevel::warning,
           "shared pool " + display + ": closed (" + why + ") with " +
               std::to_string(pool->busy()) +
               " lease(s) still out; they are revoked and their next use throws pool_closed");
    pool->close(true);
  } catch (...) {
    // close(true) does not fail for a reason the registry could act on.
  }
}

}  // namespace

// A shared pool in the registry. key, display and settings are constant after construction;
// everything else is guarded by Registry::mutex_.
struct SharedEntry {
  explicit SharedEntry(Instance in)
      : key(std::move(in.key)), display(std::move(in.display)), settings(std::move(in.settings)) {}

  const InstanceKey key;
  const std::string display;
  const Settings settings;  // the first caller's

  std::shared_ptr<Pool> pool;  // null while creating
  bool creating = true;        // the first caller is in Pool::create()
  std::size_t handles = 0;     // SharedPoolRefs alive
  // Set (from a process-wide counter, so never reused) each time the last handle goes; a linger
  // timer closes the entry only if it is still in the map with this generation and no handles.
  std::uint64_t generation = 0;
  SteadyClock::time_point idle_since;  // when the last handle went
};

// One reference from one shared_pool() call, shared by the copies of its SharedPool.
struct SharedPoolRef {
  SharedPoolRef() = default;
  SharedPoolRef(const SharedPoolRef&) = delete;
  SharedPoolRef& operator=(const SharedPoolRef&) = delete;
  ~SharedPoolRef();

  std::shared_ptr<SharedEntry> entry;  // null until the reference counts; guarded by mutex_
};

namespace {

// Things whose destruction may destroy a Pool (and so call its driver): declared before the lock
// guard, they are destroyed after it is released.
struct Graveyard {
  std::vector<std::shared_ptr<Pool>> pools;
  std::vector<std::shared_ptr<SharedEntry>> entries;
};

class Registry {
 public:
  static Registry& instance() {
    // Leaked on purpose, like Background: handles and linger timers may outlive static objects.
    static Registry* r = new Registry();
    return *r;
  }

  void register_named(const std::shared_ptr<Pool>& pool) {
    const std::string& name = pool->name();
    std::lock_guard lk(mutex_);
    if (named_.contains(name)) {
      throw Error(ErrorCode::invalid_argument,
                  "pool name '" + name +
                      "' is already in use (close that pool first, or choose another name)");
    }
    named_.emplace(name, pool);
  }

  void unregister(const Pool& pool) noexcept {
    Graveyard dead;
    const std::string& name = pool.name();
    std::lock_guard lk(mutex_);
    if (auto it = named_.find(name); it != named_.end() && it->second.get() == &pool) {
      dead.pools.push_back(std::move(it->second));
      named_.erase(it);
    }
    // A shared pool closed by hand leaves the registry too: the next shared_pool() call for its
    // instance creates a new one. Its handles keep the entry, which is no longer in the map.
    for (auto it = shared_.begin(); it != shared_.end(); ++it) {
      if (it->second->pool.get() == &pool) {
        dead.entries.push_back(std::move(it->second));
        shared_.erase(it);
        break;
      }
    }
  }

  std::shared_ptr<Pool> get(std::string_view name) {
    std::unique_lock lk(mutex_);
    if (auto it = named_.find(name); it != named_.end()) return it->second;
    std::string names;
    for (const auto& [n, p] : named_) names += (names.empty() ? "" : ", ") + n;
    lk.unlock();
    throw Error(ErrorCode::invalid_argument,
                "no pool named '" + std::string(name) +
                    "' (named pools: " + (names.empty() ? std::string("none") : names) + ")");
  }

  std::vector<std::string> names() {
    std::lock_guard lk(mutex_);
    std::vector<std::string> out;
    out.reserve(named_.size());
    for (const auto& [n, p] : named_) out.push_back(n);
    return out;
  }

  void set_limits(const SharedPoolLimits& limits);

  SharedPoolLimits limits() {
    std::lock_guard lk(mutex_);
    return limits_;
  }

  std::size_t shared_count() {
    std::lock_guard lk(mutex_);
    return shared_.size();
  }

  std::pair<std::shared_ptr<Pool>, std::shared_ptr<SharedPoolRef>> acquire_shared(
      const PoolOptions& options);

  void release(SharedPoolRef& ref) noexcept;

  // The linger timer: closes the entry if it is still the one that started lingering.
  void expire(const InstanceKey& key, std::uint64_t generation) noexcept;

 private:
  Registry() = default;

  // Starts a linger timer for the entry at key that started lingering as `generation`.
  static void post_linger_timer(InstanceKey key, std::uint64_t generation,
                                SteadyClock::time_point at) noexcept;

  mutable std::mutex mutex_;
  std::condition_variable created_;  // an entry left the creating state
  std::map<std::string, std::shared_ptr<Pool>, std::less<>> named_;  // guarded by mutex_
  std::map<InstanceKey, std::shared_ptr<SharedEntry>> shared_;       // guarded by mutex_
  SharedPoolLimits limits_;                                          // guarded by mutex_
  std::uint64_t last_generation_ = 0;                                // guarded by mutex_
};

std::pair<std::shared_ptr<Pool>, std::shared_ptr<SharedPoolRef>> Registry::acquire_shared(
    const PoolOptions& options) {
  const Dsn dsn = check_options(options);  // the errors Pool::create() would give, before anything
  Instance instance = describe(options, dsn);
  auto ref = std::make_shared<SharedPoolRef>();  // allocated first: nothing below leaks a count

  Graveyard dead;  // destroyed after lk
  std::vector<std::shared_ptr<SharedEntry>> evicted;
  std::unique_lock lk(mutex_);
  if (options.max > limits_.max_connections_per_pool) {
    throw Error(ErrorCode::invalid_argument,
                "max: " + std::to_string(options.max) +
                    " is above the shared pool limit max_connections_per_pool = " +
                    std::to_string(limits_.max_connections_per_pool) + " (for " + instance.display +
                    "; see set_shared_pool_limits())");
  }
  for (;;) {
    auto it = shared_.find(instance.key);
    if (it == shared_.end()) break;
    std::shared_ptr<SharedEntry> entry = it->second;
    if (entry->creating) {
      // Bounded by the creator's Pool::create(), which is bounded by its connect timeouts.
      created_.wait(lk, [&] { return !entry->creating; });
      continue;  // look again: it may have failed, or lingered out already
    }
    if (entry->pool->closed()) {
      // Pool::close() unregisters; this is a backstop for a close that raced with us.
      dead.entries.push_back(std::move(it->second));
      shared_.erase(it);
      break;
    }
    ++entry->handles;  // revives a lingering pool: its timer finds handles and does nothing
    ref->entry = entry;
    std::shared_ptr<Pool> pool = entry->pool;
    lk.unlock();
    const std::string diff = differences(entry->settings, instance.settings);
    if (!diff.empty()) {
      log_to(options.log, LogLevel::warning,
             "shared pool " + entry->display +
                 ": this caller's options differ from the pool's, which its first caller fixed: " +
                 diff + "; using the existing pool");
    }
    return {std::move(pool), std::move(ref)};
  }

  // A new instance. Make room by closing the pools that have lingered longest; fail, closing
  // none, when lingering pools cannot make enough room (max_pools may have been lowered).
  if (shared_.size() >= limits_.max_pools) {
    std::vector<std::map<InstanceKey, std::shared_ptr<SharedEntry>>::iterator> lingering;
    for (auto it = shared_.begin(); it != shared_.end(); ++it) {
      if (!it->second->creating && it->second->handles == 0) lingering.push_back(it);
    }
    const std::size_t needed = shared_.size() - limits_.max_pools + 1;
    if (lingering.size() < needed) {
      throw Error(ErrorCode::pool_exhausted,
                  "shared pools: cannot create one for " + instance.display + ": " +
                      std::to_string(shared_.size() - lingering.size()) + " of " +
                      std::to_string(shared_.size()) + " shared pools have handles (max_pools = " +
                      std::to_string(limits_.max_pools) +
                      "); drop unused SharedPool handles or raise max_pools with "
                      "set_shared_pool_limits()");
    }
    std::sort(lingering.begin(), lingering.end(), [](const auto& a, const auto& b) {
      return a->second->idle_since < b->second->idle_since;
    });
    for (std::size_t i = 0; i < needed; ++i) {
      evicted.push_back(std::move(lingering[i]->second));
      shared_.erase(lingering[i]);
    }
  }
  auto entry = std::make_shared<SharedEntry>(std::move(instance));
  entry->handles = 1;
  shared_.emplace(entry->key, entry);
  ref->entry = entry;
  lk.unlock();

  // Free the evicted pools' connections before this one opens its own.
  for (const auto& e : evicted) close_retired(e->pool, e->display, "evicted to make room");

  std::shared_ptr<Pool> pool;
  try {
    pool = Pool::create(options);
  } catch (...) {
    lk.lock();
    if (auto it = shared_.find(entry->key); it != shared_.end() && it->second == entry) {
      shared_.erase(it);
    }
    entry->creating = false;
    entry->handles = 0;
    ref->entry = nullptr;
    lk.unlock();
    created_.notify_all();
    throw;
  }
  lk.lock();
  entry->pool = pool;
  entry->creating = false;
  lk.unlock();
  created_.notify_all();
  return {std::move(pool), std::move(ref)};
}

void Registry::set_limits(const SharedPoolLimits& limits) {
  if (limits.linger_time.count() < 0) {
    throw Error(ErrorCode::invalid_argument,
                "linger_time: must not be negative (got " + ms_text(limits.linger_time) + ")");
  }
  if (limits.max_pools < 1) {
    throw Error(ErrorCode::invalid_argument, "max_pools: must be at least 1 (got 0)");
  }
  if (limits.max_connections_per_pool < 1) {
    throw Error(ErrorCode::invalid_argument,
                "max_connections_per_pool: must be at least 1 (got 0)");
  }
  struct Timer {
    InstanceKey key;
    std::uint64_t generation;
    SteadyClock::time_point at;
  };
  std::vector<Timer> timers;
  Graveyard dead;  // destroyed after lk
  std::vector<std::shared_ptr<SharedEntry>> expired;
  std::unique_lock lk(mutex_);
  const bool linger_changed = limits.linger_time != limits_.linger_time;
  limits_ = limits;
  if (linger_changed) {
    // Pools already lingering follow the new time, counted from when their last handle went: the
    // ones past it close now, the others get a new timer (the new generation voids the old one).
    const auto now = SteadyClock::now();
    for (auto it = shared_.begin(); it != shared_.end();) {
      SharedEntry& e = *it->second;
      if (e.creating || e.handles != 0) {
        ++it;
        continue;
      }
      const auto at = e.idle_since + limits.linger_time;
      if (at <= now) {
        expired.push_back(std::move(it->second));
        it = shared_.erase(it);
        continue;
      }
      e.generation = ++last_generation_;
      timers.push_back({e.key, e.generation, at});
      ++it;
    }
  }
  lk.unlock();
  for (auto& t : timers) post_linger_timer(std::move(t.key), t.generation, t.at);
  for (const auto& e : expired) close_retired(e->pool, e->display, "linger_time passed");
}

void Registry::post_linger_timer(InstanceKey key, std::uint64_t generation,
                                 SteadyClock::time_point at) noexcept {
  try {
    Background::instance().post_at(
        at, [key = std::move(key), generation] { Registry::instance().expire(key, generation); });
  } catch (...) {
    // Out of memory for the timer: the pool lingers until it is revived or evicted for room.
  }
}

void Registry::release(SharedPoolRef& ref) noexcept {
  Graveyard dead;
  std::shared_ptr<Pool> close_now;
  std::string display;
  std::uint64_t generation = 0;
  InstanceKey key;
  milliseconds linger{0};
  const auto idle_since = SteadyClock::now();
  {
    std::lock_guard lk(mutex_);
    if (!ref.entry) return;
    dead.entries.push_back(std::move(ref.entry));
    SharedEntry* entry = dead.entries.back().get();
    if (--entry->handles != 0) return;
    auto it = shared_.find(entry->key);
    if (it == shared_.end() || it->second.get() != entry) return;  // closed by hand: nothing to do
    linger = limits_.linger_time;
    if (linger.count() == 0) {
      close_now = entry->pool;
      display = entry->display;
      dead.entries.push_back(std::move(it->second));
      shared_.erase(it);
    } else {
      generation = entry->generation = ++last_generation_;
      entry->idle_since = idle_since;
      key = entry->key;
    }
  }
  if (close_now) {
    close_retired(close_now, display, "linger_time is 0");
    return;
  }
  post_linger_timer(std::move(key), generation, idle_since + linger);
}

void Registry::expire(const InstanceKey& key, std::uint64_t generation) noexcept {
  Graveyard dead;
  std::shared_ptr<Pool> pool;
  std::string display;
  {
    std::lock_guard lk(mutex_);
    auto it = shared_.find(key);
    if (it == shared_.end()) return;
    SharedEntry& e = *it->second;
    if (e.generation != generation || e.handles != 0 || e.creating) return;  // revived/replaced
    pool = e.pool;
    display = e.display;
    dead.entries.push_back(std::move(it->second));
    shared_.erase(it);
  }
  close_retired(pool, display, "linger_time passed");
}

}  // namespace

SharedPoolRef::~SharedPoolRef() { Registry::instance().release(*this); }

void register_named_pool(const std::shared_ptr<Pool>& pool) {
  Registry::instance().register_named(pool);
}

void unregister_named_pool(const Pool& pool) noexcept { Registry::instance().unregister(pool); }

}  // namespace core

// --- Public API -------------------------------------------------------------------------------

std::shared_ptr<Pool> get_pool(std::string_view name) {
  return core::Registry::instance().get(name);
}

std::vector<std::string> pool_names() { return core::Registry::instance().names(); }

void set_shared_pool_limits(const SharedPoolLimits& limits) {
  core::Registry::instance().set_limits(limits);
}

SharedPoolLimits shared_pool_limits() { return core::Registry::instance().limits(); }

std::size_t shared_pool_count() { return core::Registry::instance().shared_count(); }

SharedPool shared_pool(const PoolOptions& options) {
  auto [pool, ref] = core::Registry::instance().acquire_shared(options);
  return SharedPool(std::move(pool), std::move(ref));
}

SharedPool::SharedPool(std::shared_ptr<Pool> pool,
                       std::shared_ptr<core::SharedPoolRef> ref) noexcept
    : pool_(std::move(pool)), ref_(std::move(ref)) {}

Pool& SharedPool::operator*() const { return *operator->(); }

Pool* SharedPool::operator->() const {
  if (!pool_) {
    throw Error(ErrorCode::invalid_argument,
                "SharedPool: empty handle (default-constructed, moved from or reset)");
  }
  return pool_.get();
}

void SharedPool::reset() noexcept {
  ref_.reset();  // first: the pool may start to linger (or close, with linger_time 0)
  pool_.reset();
}

}  // namespace reservoir
