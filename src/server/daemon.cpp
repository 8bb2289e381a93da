// src/server/daemon.cpp: reservoird's process: listeners on worker threads, pools per
// (database, user), reload, signals, cancel keys, logging.
#include "server/daemon.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/executor_work_guard.hpp>
#include <asio/generic/stream_protocol.hpp>
#include <asio/io_context.hpp>
#include <asio/ip/tcp.hpp>
#include <asio/local/stream_protocol.hpp>
#include <asio/post.hpp>
#include <asio/redirect_error.hpp>
#include <asio/signal_set.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <cctype>
#include <chrono>
#include <csignal>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <functional>
#include <random>
#include <thread>

#include "reservoir/error.hpp"
#include "server/session.hpp"

namespace reservoir::server {

// ---- Log -------------------------------------------------------------------------------------

void Log::configure(const std::string& level, const std::string& file) {
  Level l = Level::info;
  if (level == "error") l = Level::error;
  if (level == "warning" || level == "warn") l = Level::warning;
  if (level == "debug") l = Level::debug;
  level_.store(l, std::memory_order_relaxed);
  std::lock_guard lock(mutex_);
  if (file_ != nullptr) std::fclose(file_);
  file_ = file.empty() ? nullptr : std::fopen(file.c_str(), "a");
}

Log::~Log() {
  if (file_ != nullptr) std::fclose(file_);
}

void Log::write(Level l, const std::string& message) {
  if (!enabled(l)) return;
  static const char* const names[] = {"ERROR", "WARNING", "LOG", "DEBUG"};
  char stamp[32];
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  ::localtime_r(&now, &tm);
  std::strftime(stamp, sizeof stamp, "%Y-%m-%d %H:%M:%S", &tm);
  std::lock_guard lock(mutex_);
  std::FILE* out = file_ != nullptr ? file_ : stderr;
  std::fprintf(out, "%s [%d] %s %s\n", stamp, static_cast<int>(::getpid()),
               names[static_cast<int>(l)], message.c_str());
  std::fflush(out);
}

// ---- config ----------------------------------------------------------------------------------

namespace {

std::string resolve(const std::string& base_file, const std::string& path) {
  if (path.empty() || path.front() == '/') return path;
  return (std::filesystem::path(base_file).parent_path() / path).string();
}

std::map<std::string, Secret> load_users(const Config& c) {
  if (c.auth_file.empty()) return {};
  return load_auth_file(resolve(c.path, c.auth_file));
}

std::string percent(std::string_view s) {
  std::string out;
  for (const unsigned char ch : s) {
    if (std::isalnum(ch) || ch == '_' || ch == '-' || ch == '.') {
      out.push_back(static_cast<char>(ch));
    } else {
      char b[4];
      std::snprintf(b, sizeof b, "%%%02X", ch);
      out += b;
    }
  }
  return out;
}

}  // namespace

BackendTarget make_target(const Config& config, const DatabaseEntry& db,
                          const std::string& server_user, const std::string& password) {
  BackendTarget t;
  t.host = db.host;
  t.port = db.port;
  t.dbname = db.dbname.empty() ? db.name : db.dbname;
  t.user = server_user;
  t.password = password;
  t.check_query = config.server_check_query;
  t.reset_query = config.server_reset_query;
  return t;
}

struct Daemon::Impl {
  std::vector<std::unique_ptr<asio::io_context>> ios;
  std::vector<std::thread> threads;
  asio::io_context control;
};

Daemon::Daemon(std::string config_path) : path_(std::move(config_path)) {
  auto c = std::make_shared<Config>(load_config(path_));
  auto users = std::make_shared<const std::map<std::string, Secret>>(load_users(*c));
  log_.configure(c->log_level, resolve(c->path, c->logfile));
  config_ = std::move(c);
  users_ = std::move(users);
}

Daemon::~Daemon() = default;

std::shared_ptr<const Config> Daemon::config() const {
  std::lock_guard lock(mutex_);
  return config_;
}

std::shared_ptr<const std::map<std::string, Secret>> Daemon::users() const {
  std::lock_guard lock(mutex_);
  return users_;
}

bool Daemon::reload() {
  std::shared_ptr<Config> c;
  std::shared_ptr<const std::map<std::string, Secret>> users;
  try {
    c = std::make_shared<Config>(load_config(path_));
    users = std::make_shared<const std::map<std::string, Secret>>(load_users(*c));
  } catch (const std::exception& e) {
    log_.error(std::string("reload failed, keeping the old configuration: ") + e.what());
    return false;
  }
  log_.configure(c->log_level, resolve(c->path, c->logfile));
  std::vector<std::shared_ptr<PoolEntry>> pools;
  {
    std::lock_guard lock(mutex_);
    config_ = c;
    users_ = users;
    for (auto& [key, entry] : pools_) pools.push_back(entry);
  }
  // Existing pools: new sizes and timeouts now, new server settings for new connections.
  for (auto& p : pools) {
    auto it = c->databases.find(p->database);
    if (it == c->databases.end()) it = c->databases.find("*");
    if (it == c->databases.end()) continue;
    DatabaseEntry db = it->second;
    if (db.name == "*" || db.name.empty()) db.name = p->database;
    if (db.dbname.empty()) db.dbname = p->database;
    auto old = p->driver->target();
    std::string password = old->password;
    if (db.password) {
      password = *db.password;
    } else if (auto u = users->find(p->user);
               u != users->end() && u->second.kind != Secret::Kind::scram) {
      password = u->second.text;
    }
    auto t = std::make_shared<BackendTarget>(make_target(*c, db, p->user, password));
    t->startup_params = old->startup_params;
    p->driver->set_target(std::move(t));
    PoolSettings s;
    s.max = db.pool_size.value_or(c->default_pool_size);
    s.min = std::min(db.min_pool_size.value_or(c->min_pool_size), *s.max);
    s.wait_timeout = c->query_wait_timeout;
    s.get_mode = c->query_wait_timeout.count() > 0 ? GetMode::timed_wait : GetMode::wait;
    s.idle_timeout = c->server_idle_timeout;
    s.ping_interval = c->server_check_delay;
    s.max_lifetime = c->server_lifetime;
    p->limit->cap.store(db.max_db_connections.value_or(c->max_db_connections));
    p->reserve_size.store(db.reserve_pool.value_or(c->reserve_pool_size));
    p->reserve_timeout_ms.store(c->reserve_pool_timeout.count());
    try {
      p->pool->reconfigure(s);
    } catch (const std::exception& e) {
      log_.warning("pool " + p->database + "/" + p->user + ": " + e.what());
    }
  }
  log_.info("configuration reloaded from " + path_);
  return true;
}

std::shared_ptr<PoolEntry> Daemon::pool_for(
    const DatabaseEntry& db, const std::string& server_user, const std::string& password,
    std::vector<std::pair<std::string, std::string>> startup_params) {
  auto c = config();
  std::lock_guard lock(mutex_);
  auto& slot = pools_[{db.name, server_user}];
  if (slot) return slot;
  auto entry = std::make_shared<PoolEntry>();
  entry->database = db.name;
  entry->user = server_user;
  entry->mode = db.pool_mode.value_or(c->pool_mode);
  auto& limit = limits_[db.name];
  if (!limit) limit = std::make_shared<DbLimit>();
  limit->cap.store(db.max_db_connections.value_or(c->max_db_connections));
  entry->limit = limit;
  entry->reserve_size.store(db.reserve_pool.value_or(c->reserve_pool_size));
  entry->reserve_timeout_ms.store(c->reserve_pool_timeout.count());
  auto target = std::make_shared<BackendTarget>(make_target(*c, db, server_user, password));
  target->startup_params = std::move(startup_params);
  entry->driver = std::make_shared<BackendDriver>(target, limit);

  PoolOptions o;
  o.dsn = "reservoird://" + percent(server_user) + "@" + percent(db.host) + ":" +
          std::to_string(db.port) + "/" + percent(target->dbname);
  o.name = db.name + "/" + server_user;
  o.driver = entry->driver;
  o.max = std::max<std::uint32_t>(1, db.pool_size.value_or(c->default_pool_size));
  const std::uint32_t min = std::min(db.min_pool_size.value_or(c->min_pool_size), o.max);
  o.min = 0;  // created without connecting; min is raised below, opened in the background
  o.increment = 1;
  o.get_mode = c->query_wait_timeout.count() > 0 ? GetMode::timed_wait : GetMode::wait;
  o.wait_timeout = c->query_wait_timeout;
  o.connect_timeout = c->server_connect_timeout;
  o.ping_interval = c->server_check_delay;
  o.ping_timeout = std::chrono::seconds(5);
  o.idle_timeout = c->server_idle_timeout;
  o.max_lifetime = c->server_lifetime;
  o.lifetime_jitter = std::min<std::chrono::milliseconds>(std::chrono::milliseconds(60'000),
                                                          c->server_lifetime / 10);
  o.max_connecting = 4;
  o.reset_on_release = false;  // session mode resets on the worker pool when the client leaves
  Log* log = &log_;
  o.log = [log](LogLevel level, std::string_view message) {
    if (level >= LogLevel::warning)
      log->warning(std::string(message));
    else
      log->debug(std::string(message));
  };
  entry->pool = Pool::create(o);
  if (min > 0) {
    PoolSettings s;
    s.min = min;
    entry->pool->reconfigure(s);
  }
  log_.info("new pool " + o.name + " (max " + std::to_string(o.max) + ")");
  slot = entry;
  return entry;
}

std::vector<std::shared_ptr<PoolEntry>> Daemon::pools() const {
  std::lock_guard lock(mutex_);
  std::vector<std::shared_ptr<PoolEntry>> out;
  for (const auto& [k, v] : pools_) out.push_back(v);
  return out;
}

bool Daemon::evict_idle(const PoolEntry& entry) {
  std::vector<std::shared_ptr<PoolEntry>> others;
  {
    std::lock_guard lock(mutex_);
    for (const auto& [k, v] : pools_)
      if (v.get() != &entry && v->database == entry.database && v->pool->idle() > 0)
        others.push_back(v);
  }
  for (auto& p : others) {
    // An idle one is taken without waiting (at the cap a connect attempt fails at once in the
    // driver, so no_wait never blocks on a new connection) and closed.
    AcquireOptions o;
    o.get_mode = GetMode::no_wait;
    try {
      Lease lease = p->pool->acquire(o);
      lease.drop();
      log_.debug("max_db_connections: closed an idle server connection of " + p->database + "/" +
                 p->user + " for " + entry.user);
      return true;
    } catch (const std::exception&) {
    }
  }
  return false;
}

// ---- clients and cancel keys -----------------------------------------------------------------

void ClientSlot::set_peer(const ::sockaddr_storage& peer) noexcept {
  if (peer.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&peer);
    family = Family::inet;
    std::memcpy(ip.data(), &a->sin_addr, sizeof a->sin_addr);
    client_port = ntohs(a->sin_port);
  } else if (peer.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&peer);
    family = Family::inet6;
    std::memcpy(ip.data(), &a->sin6_addr, sizeof a->sin6_addr);
    client_port = ntohs(a->sin6_port);
  } else {
    family = Family::unix_socket;
  }
}

std::string ClientSlot::addr_text() const {
  char text[INET6_ADDRSTRLEN] = "";
  switch (family) {
    case Family::none:
      break;
    case Family::inet:
      ::inet_ntop(AF_INET, ip.data(), text, sizeof text);
      break;
    case Family::inet6:
      ::inet_ntop(AF_INET6, ip.data(), text, sizeof text);
      break;
    case Family::unix_socket:
      return "unix";
  }
  return text;
}

pg::BackendKey Daemon::register_client(ClientSlot* slot) {
  std::lock_guard lock(mutex_);
  while (true) {
    // Unguessable (OpenSSL's CSPRNG): a client that could predict another's key could cancel
    // its queries.
    std::uint64_t r = 0;
    const std::string random = random_bytes(sizeof r);
    std::memcpy(&r, random.data(), sizeof r);
    pg::BackendKey k{static_cast<std::int32_t>((r >> 32) & 0x7fffffff),
                     static_cast<std::int32_t>(r)};
    if (k.pid == 0) continue;
    slot->key = k;
    if (cancel_.insert(slot)) return k;
  }
}

std::vector<ClientInfo> Daemon::clients_now() const {
  std::lock_guard lock(mutex_);
  std::vector<ClientInfo> out;
  out.reserve(cancel_.size());
  cancel_.for_each([&](const ClientSlot& s) {
    const ClientSlot* slot = &s;
    ClientInfo& c = out.emplace_back();
    c.key = slot->key;
    c.user = slot->user;
    if (slot->database != nullptr) c.database = *slot->database;
    c.addr = slot->addr_text();
    if (slot->cclass) c.cclass = *slot->cclass;
    c.client_port = slot->client_port;
    c.connect_time = slot->connect_time;
    std::lock_guard slot_lock(slot->lock);
    c.attached = slot->attached;
    if (slot->attached) {
      c.host = slot->server->host;
      c.port = slot->server->port;
      c.server_key = slot->server_key;
    }
  });
  // In the order of their keys (the order of the std::map this table replaced).
  std::sort(out.begin(), out.end(), [](const ClientInfo& a, const ClientInfo& b) {
    return key_bits(a.key) < key_bits(b.key);
  });
  return out;
}

void Daemon::forget_client(pg::BackendKey key) {
  std::lock_guard lock(mutex_);
  cancel_.erase(key_bits(key));
}

void Daemon::cancel(pg::BackendKey key) {
  std::string host;
  std::uint16_t port = 0;
  pg::BackendKey real;
  {
    std::lock_guard lock(mutex_);  // the slot's session cannot end meanwhile
    const ClientSlot* found = cancel_.find(key_bits(key));
    if (found == nullptr) return;  // unknown or stale: ignored, as PostgreSQL does
    const ClientSlot& slot = *found;
    std::lock_guard slot_lock(slot.lock);
    if (!slot.attached) return;
    host = slot.server->host;
    port = slot.server->port;
    real = slot.server_key;
  }
  // A cancel is rare: a short-lived thread keeps the blocking connect off the event loops.
  std::thread([host, port, real] {
    send_cancel(host, port, real, std::chrono::seconds(5));
  }).detach();
}

bool Daemon::enter_client() noexcept {
  const std::uint32_t limit = config()->max_client_conn;
  std::uint32_t n = clients_.load(std::memory_order_relaxed);
  while (true) {
    if (limit > 0 && n >= limit) return false;
    if (clients_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed)) return true;
  }
}

void Daemon::leave_client() noexcept { clients_.fetch_sub(1, std::memory_order_relaxed); }

// ---- run -------------------------------------------------------------------------------------

namespace {

template <class Acceptor>
asio::awaitable<void> accept_loop(Daemon& d, Acceptor& acceptor) {
  while (true) {
    ClientSocket s(static_cast<asio::io_context&>(
        asio::query(acceptor.get_executor(), asio::execution::context)));
    std::error_code ec;
    co_await acceptor.async_accept(s, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (ec == asio::error::operation_aborted || d.shutting_down()) co_return;
      d.log().warning("accept: " + ec.message());
      continue;
    }
    if (d.shutting_down()) co_return;
    asio::co_spawn(acceptor.get_executor(), serve_client(d, std::move(s)), asio::detached);
  }
}

}  // namespace

void Daemon::shutdown() noexcept {
  shutting_down_.store(true);
  if (impl_) asio::post(impl_->control, [this] { impl_->control.stop(); });
}

int Daemon::run() {
  impl_ = std::make_unique<Impl>();
  auto c = config();
  const std::uint32_t workers = worker_count(*c);
  // Acceptors live on their worker's io_context; they are created here (errors reach main).
  std::vector<std::unique_ptr<asio::ip::tcp::acceptor>> tcp;
  std::vector<std::unique_ptr<asio::local::stream_protocol::acceptor>> unix_acceptors;
  asio::ip::tcp::endpoint ep;
  try {
    ep = asio::ip::tcp::endpoint(
        asio::ip::make_address(c->listen_addr == "*" ? "0.0.0.0" : c->listen_addr), c->listen_port);
  } catch (const std::exception& e) {
    log_.error("listen_addr " + c->listen_addr + ": " + e.what());
    return 1;
  }
  for (std::uint32_t i = 0; i < workers; ++i) {
    impl_->ios.push_back(std::make_unique<asio::io_context>(1));
    auto& io = *impl_->ios.back();
    try {
      auto a = std::make_unique<asio::ip::tcp::acceptor>(io);
      a->open(ep.protocol());
      a->set_option(asio::socket_base::reuse_address(true));
      const int one = 1;
      ::setsockopt(a->native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
      a->bind(ep);
      a->listen(asio::socket_base::max_listen_connections);
      tcp.push_back(std::move(a));
    } catch (const std::exception& e) {
      log_.error("cannot listen on " + c->listen_addr + ":" + std::to_string(c->listen_port) +
                 ": " + e.what());
      return 1;
    }
  }
  std::string unix_path;
  if (!c->unix_socket_dir.empty()) {
    unix_path = c->unix_socket_dir + "/.s.PGSQL." + std::to_string(c->listen_port);
    ::unlink(unix_path.c_str());
    try {
      unix_acceptors.push_back(std::make_unique<asio::local::stream_protocol::acceptor>(
          *impl_->ios[0], asio::local::stream_protocol::endpoint(unix_path)));
      ::chmod(unix_path.c_str(), 0777);
    } catch (const std::exception& e) {
      log_.error("cannot listen on " + unix_path + ": " + e.what());
      return 1;
    }
  }
  if (!c->pidfile.empty()) {
    std::ofstream(resolve(c->path, c->pidfile)) << ::getpid() << "\n";
  }
  for (std::uint32_t i = 0; i < workers; ++i)
    asio::co_spawn(*impl_->ios[i], accept_loop(*this, *tcp[i]), asio::detached);
  for (auto& a : unix_acceptors)
    asio::co_spawn(*impl_->ios[0], accept_loop(*this, *a), asio::detached);
  for (std::uint32_t i = 0; i < workers; ++i) {
    impl_->threads.emplace_back([io = impl_->ios[i].get()] {
      auto guard = asio::make_work_guard(*io);
      io->run();
    });
  }
  log_.info("listening on " + c->listen_addr + ":" + std::to_string(c->listen_port) +
            (unix_path.empty() ? "" : " and " + unix_path) + " with " + std::to_string(workers) +
            " workers");

  asio::signal_set signals(impl_->control, SIGINT, SIGTERM, SIGHUP);
  std::function<void(const std::error_code&, int)> on_signal;
  on_signal = [&](const std::error_code& ec, int sig) {
    if (ec) return;
    if (sig == SIGHUP) {
      reload();
      signals.async_wait(on_signal);
      return;
    }
    log_.info("got signal " + std::to_string(sig) + ", shutting down");
    shutting_down_.store(true);
    impl_->control.stop();
  };
  signals.async_wait(on_signal);
  ::signal(SIGPIPE, SIG_IGN);
  impl_->control.run();

  // Shutdown: stop accepting, let sessions on a server connection finish (bounded), then stop.
  shutting_down_.store(true);
  for (std::uint32_t i = 0; i < workers; ++i) {
    asio::post(*impl_->ios[i], [a = tcp[i].get()] {
      std::error_code ec;
      a->close(ec);
    });
  }
  for (auto& a : unix_acceptors)
    asio::post(*impl_->ios[0], [a = a.get()] {
      std::error_code ec;
      a->close(ec);
    });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (attached.load() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  for (auto& io : impl_->ios) io->stop();
  for (auto& t : impl_->threads) t.join();
  tcp.clear();
  unix_acceptors.clear();
  // Idle server connections first: their sockets are registered with the event loops, which
  // must outlive them. Then the loops, which destroys the remaining sessions; the server
  // connections they hold are closed as their leases end (close(true) revoked them).
  for (auto& p : pools()) p->pool->close(true);
  impl_->ios.clear();
  if (!unix_path.empty()) ::unlink(unix_path.c_str());
  if (!c->pidfile.empty()) ::unlink(resolve(c->path, c->pidfile).c_str());
  log_.info("shut down");
  return 0;
}

}  // namespace reservoir::server
