// src/server/session.cpp: a reservoird client session: startup, authentication, and the relay
// between the client and server connections per pool mode (session, transaction, statement).
//
// The relay reads whatever is available (large buffers), scans only message headers (plus the
// bodies of ReadyForQuery and ParameterStatus from the server), and writes each chunk on in one
// call. A server connection goes back to the pool when ReadyForQuery says idle, every Query and
// Sync sent has had its ReadyForQuery, no extended-protocol message waits for a Sync, no COPY is
// in progress and the client is between messages.
#include "server/session.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>

#include <algorithm>
#include <asio/associated_allocator.hpp>
#include <asio/co_spawn.hpp>
#include <asio/detached.hpp>
#include <asio/experimental/as_tuple.hpp>
#include <asio/experimental/awaitable_operators.hpp>
#include <asio/experimental/deferred.hpp>
#include <asio/experimental/parallel_group.hpp>
#include <asio/posix/stream_descriptor.hpp>
#include <asio/read.hpp>
#include <asio/steady_timer.hpp>
#include <asio/use_awaitable.hpp>
#include <asio/write.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <random>

#include "reservoir/async.hpp"
#include "reservoir/error.hpp"
#include "server/admin.hpp"
#include "server/auth.hpp"
#include "server/backend.hpp"
#include "server/daemon.hpp"
#include "server/pg_codec.hpp"

namespace reservoir::server {

// ---- startup options -------------------------------------------------------------------------

ClientOptions parse_client_options(std::string_view options) {
  ClientOptions out;
  // Split on unescaped whitespace, as the server does (backslash escapes the next character).
  std::vector<std::string> tokens;
  std::string cur;
  for (std::size_t i = 0; i < options.size(); ++i) {
    const char ch = options[i];
    if (ch == '\\' && i + 1 < options.size()) {
      cur.push_back(ch);
      cur.push_back(options[++i]);
    } else if (ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r') {
      if (!cur.empty()) tokens.push_back(std::move(cur));
      cur.clear();
    } else {
      cur.push_back(ch);
    }
  }
  if (!cur.empty()) tokens.push_back(std::move(cur));

  std::vector<std::string> kept;
  auto take = [&](std::string_view setting) -> bool {  // true: a reservoir.* setting, consumed
    if (setting.rfind("reservoir.", 0) != 0) return false;
    const std::size_t eq = setting.find('=');
    const std::string_view key = setting.substr(0, eq);
    const std::string_view value =
        eq == std::string_view::npos ? std::string_view() : setting.substr(eq + 1);
    if (key == "reservoir.cclass") {
      out.cclass = std::string(value);
    } else if (key == "reservoir.purity") {
      if (value == "self" || value == "SELF") {
        out.purity = Purity::self;
      } else if (value == "new" || value == "NEW") {
        out.purity = Purity::new_;
      } else {
        out.error =
            "invalid value for reservoir.purity: \"" + std::string(value) + "\" (self or new)";
      }
    } else {
      out.error = "unrecognized configuration parameter \"" + std::string(key) + "\"";
    }
    return true;
  };
  for (std::size_t i = 0; i < tokens.size(); ++i) {
    const std::string& t = tokens[i];
    if (t == "-c" && i + 1 < tokens.size()) {
      if (take(tokens[i + 1])) {
        ++i;
        continue;
      }
      kept.push_back(t);
      kept.push_back(tokens[++i]);
      continue;
    }
    if (t.rfind("-c", 0) == 0 && t.size() > 2 && take(std::string_view(t).substr(2))) continue;
    if (t.rfind("--", 0) == 0 && take(std::string_view(t).substr(2))) continue;
    kept.push_back(t);
  }
  for (const auto& k : kept) {
    if (!out.server_options.empty()) out.server_options.push_back(' ');
    out.server_options += k;
  }
  return out;
}

namespace {

using Socket = ClientSocket;
using asio::use_awaitable;
using namespace asio::experimental::awaitable_operators;

constexpr std::size_t kClientBuffer = 16 * 1024;
constexpr std::size_t kServerBuffer = 64 * 1024;
constexpr std::size_t kMaxAuthMessage = 10'000;

std::string quote(std::string_view s) { return "\"" + std::string(s) + "\""; }

// Relay buffers are lent to a session only while it moves bytes (or waits for a reply it is
// owed), so memory grows with active clients, not connected ones. Each io_context runs on one
// thread: a thread-local free list per size needs no lock.
template <std::size_t Size>
struct BufferReturn {
  // Owning, so that a worker thread's buffers are freed when it ends.
  static std::vector<std::unique_ptr<char[]>>& free_list() {
    thread_local std::vector<std::unique_ptr<char[]>> list;
    return list;
  }
  void operator()(char* p) const noexcept {
    std::unique_ptr<char[]> owned(p);
    auto& list = free_list();
    if (list.size() < 256) {
      try {
        list.push_back(std::move(owned));
      } catch (...) {
      }
    }
  }
};
template <std::size_t Size>
using Buffer = std::unique_ptr<char[], BufferReturn<Size>>;
template <std::size_t Size>
Buffer<Size> lend() {
  auto& list = BufferReturn<Size>::free_list();
  if (list.empty()) return Buffer<Size>(new char[Size]);
  char* p = list.back().release();
  list.pop_back();
  return Buffer<Size>(p);
}

// A client between transactions (no server connection, nothing unread) is parked: no coroutine
// and no buffer, only a wait on its socket that owns the session (shared_ptr). When the client
// speaks, a coroutine is spawned for it again (resume()). So an idle client costs the Session
// object, the wait and the socket's registration, a few hundred bytes.
// Plain operator new for the wait of a parked client. (Asio's default recycles blocks per thread
// and may hand a small operation a larger block once used by something else: with thousands of
// parked clients that is most of their wait's memory.)
template <class T>
struct ExactAllocator {
  using value_type = T;
  ExactAllocator() = default;
  template <class U>
  ExactAllocator(const ExactAllocator<U>&) noexcept {}
  T* allocate(std::size_t n) { return std::allocator<T>().allocate(n); }
  void deallocate(T* p, std::size_t n) noexcept { std::allocator<T>().deallocate(p, n); }
  template <class U>
  bool operator==(const ExactAllocator<U>&) const noexcept {
    return true;
  }
};

class Session {
 public:
  Session(Daemon& d, Socket s)
      : d_(d),
        client_(std::move(s)),
        cfg_(d.config()),
        from_client_(pg::kDefaultMaxMessage),
        from_server_(pg::kDefaultMaxMessage, pg::types_bitmap("ZS")) {}

  ~Session() {
    if (server_) detach(false);  // the coroutine was destroyed (shutdown): never reuse unchecked
    if (registered_) d_.forget_client(slot_.key);
    if (counted_) d_.leave_client();
    if (pool_) pool_->clients.fetch_sub(1, std::memory_order_relaxed);
  }

  // Startup and login, then the relay as resume() runs it (until the client is idle, then parked,
  // or gone).
  static asio::awaitable<void> serve(std::shared_ptr<Session> s) {
    bool logged_in = false;
    try {
      logged_in = co_await s->startup();
      if (logged_in) logged_in = co_await s->login();
    } catch (const std::exception& e) {
      s->log_failure(e);
    }
    if (logged_in)
      co_await resume(std::move(s), std::error_code());
    else if (s->server_)
      co_await s->leave_server();
  }

 private:
  // Waits for the parked client's next bytes (or client_idle_timeout), then resume()s it.
  static void park(std::shared_ptr<Session> s) {
    Session& self = *s;
    self.parked_ = true;
    if (self.cfg_->client_idle_timeout.count() > 0) {
      self.timer().expires_after(self.cfg_->client_idle_timeout);
      // Weak: the session may end (the wait's handler ran) before this handler runs.
      self.timer().async_wait([w = std::weak_ptr<Session>(s)](const std::error_code& ec) {
        if (ec) return;
        if (auto s = w.lock(); s && s->parked_) {
          s->idle_expired_ = true;
          std::error_code ignored;
          s->client_.cancel(ignored);
        }
      });
    }
    self.client_.async_wait(Socket::wait_read, Wake{std::move(s)});
  }

  // The parked client's wait handler: owns the session. Its allocator is a member type rather
  // than asio::bind_allocator's (whose allocator member takes a padded word in the wait).
  struct Wake {
    std::shared_ptr<Session> s;
    using allocator_type = ExactAllocator<void>;
    allocator_type get_allocator() const noexcept { return {}; }
    void operator()(const std::error_code& ec) {
      s->parked_ = false;
      if (s->timer_) s->timer_->cancel();
      auto ex = s->client_.get_executor();
      asio::co_spawn(ex, resume(std::move(s), ec), asio::detached);
    }
  };

  // The relay from a parked (or just logged-in) client's wake-up until it is idle again (parked
  // anew) or gone. ec: the wait's outcome.
  static asio::awaitable<void> resume(std::shared_ptr<Session> s, std::error_code ec) {
    bool idle = false;
    try {
      if (s->idle_expired_) {
        co_await s->fail("08P01", "client_idle_timeout");
      } else if (!ec) {
        idle = co_await s->relay();
      }
    } catch (const std::exception& e) {
      s->log_failure(e);
    }
    if (idle)
      park(std::move(s));
    else if (s->server_)
      co_await s->leave_server();
  }

  void log_failure(const std::exception& e) {
    d_.log().debug("client " + slot_.user + "@" + database() + ": " + e.what());
  }

  const std::string& database() const {
    static const std::string none;
    return slot_.database != nullptr ? *slot_.database : login_ ? login_->database : none;
  }

  asio::steady_timer& timer() {
    if (!timer_) timer_ = std::make_unique<asio::steady_timer>(client_.get_executor());
    return *timer_;
  }

  // ---- I/O helpers ----

  asio::awaitable<bool> write_client(const char* p, std::size_t n) {
    auto [ec, written] = co_await asio::async_write(client_, asio::buffer(p, n),
                                                    asio::experimental::as_tuple(use_awaitable));
    co_return !ec;
  }
  std::string& out() {
    if (!out_) out_ = std::make_unique<std::string>();
    return *out_;
  }
  // Writes what out() holds and frees it.
  asio::awaitable<bool> flush_out() {
    if (!out_) co_return true;
    const bool ok = co_await write_client(out_->data(), out_->size());
    out_.reset();
    co_return ok;
  }
  // Sends an ErrorResponse (FATAL ends the session: callers return after it).
  asio::awaitable<void> fail(std::string_view sqlstate, std::string_view message,
                             std::string_view severity = "FATAL") {
    pg::put_error_response(out(), severity, sqlstate, message);
    co_await flush_out();
    if (severity == "FATAL")
      d_.log().info("client " + slot_.user + "@" + database() + " closed: " + std::string(message));
  }

  // Reads one whole normal-phase message during authentication into login_->in.
  asio::awaitable<std::optional<pg::Message>> read_auth_message() {
    if (login_->used > 0) {
      login_->in.erase(0, login_->used);
      login_->used = 0;
    }
    while (true) {
      std::size_t size = 0;
      if (auto m = pg::read_message(login_->in, &size, kMaxAuthMessage)) {
        login_->used = size;
        co_return m;
      }
      char buf[4096];
      auto [ec, n] = co_await client_.async_read_some(asio::buffer(buf),
                                                      asio::experimental::as_tuple(use_awaitable));
      if (ec || n == 0) co_return std::nullopt;
      login_->in.append(buf, n);
    }
  }

  // ---- startup ----

  asio::awaitable<bool> startup() {
    std::string error_state = "08P01", error_text;  // out of catch blocks (no co_await there)
    pg::StartupReader reader;
    char buf[4096];
    while (true) {
      timer().expires_after(std::chrono::seconds(15));  // a client that never sends a startup
      auto r = co_await (
          client_.async_read_some(asio::buffer(buf), asio::experimental::as_tuple(use_awaitable)) ||
          timer().async_wait(asio::experimental::as_tuple(use_awaitable)));
      if (r.index() == 1) co_return false;
      auto [ec, n] = std::get<0>(r);
      if (ec || n == 0) co_return false;
      try {
        reader.feed(buf, n);
        while (auto frame = reader.next()) {
          pg::StartupPacket p = pg::parse_startup(*frame);
          switch (p.kind) {
            case pg::StartupPacket::Kind::ssl_request:
            case pg::StartupPacket::Kind::gssenc_request: {
              const char no = 'N';
              if (!co_await write_client(&no, 1)) co_return false;
              break;
            }
            case pg::StartupPacket::Kind::cancel_request:
              d_.cancel({p.cancel_pid, p.cancel_key});
              co_return false;
            case pg::StartupPacket::Kind::startup:
              login_->startup = std::move(p);
              login_->in = std::string(reader.rest());
              co_return true;
          }
        }
      } catch (const pg::ProtocolError& e) {
        error_state = e.sqlstate();
        error_text = e.what();
      }
      if (!error_text.empty()) {
        co_await fail(error_state, error_text);
        co_return false;
      }
    }
  }

  // ---- login ----

  asio::awaitable<bool> login() {
    std::string error_state = "08P01", error_text;  // out of catch blocks (no co_await there)
    slot_.user = *login_->startup.param("user");
    const std::string* db = login_->startup.param("database");
    login_->database = db != nullptr && !db->empty() ? *db : slot_.user;
    if (!d_.enter_client()) {
      co_await fail("53300", "no more connections allowed (max_client_conn)");
      co_return false;
    }
    counted_ = true;
    const std::string* opts = login_->startup.param("options");
    const ClientOptions copts = parse_client_options(opts != nullptr ? *opts : std::string());
    if (!copts.error.empty()) {
      co_await fail("22023", copts.error);
      co_return false;
    }
    if (is_admin_database(database())) {
      const auto listed = [&](const std::vector<std::string>& users) {
        return std::find(users.begin(), users.end(), slot_.user) != users.end();
      };
      if (!co_await authenticate()) co_return false;
      const bool admin = listed(cfg_->admin_users);
      if (!admin && !listed(cfg_->stats_users)) {
        co_await fail(
            "28000", "not allowed: " + quote(slot_.user) + " is in neither admin_users nor stats_users");
        co_return false;
      }
      pg::put_parameter_status(out(), "server_version", "15.0 (reservoird 0.1.0)");
      pg::put_parameter_status(out(), "client_encoding", "UTF8");
      pg::put_parameter_status(out(), "server_encoding", "UTF8");
      pg::put_parameter_status(out(), "DateStyle", "ISO, MDY");
      pg::put_parameter_status(out(), "standard_conforming_strings", "on");
      pg::put_parameter_status(out(), "integer_datetimes", "on");
      pg::put_backend_key_data(out(), {0, 0});
      pg::put_ready_for_query(out(), 'I');
      if (!co_await flush_out()) co_return false;
      co_await admin_console(admin);
      co_return false;
    }
    auto it = cfg_->databases.find(database());
    if (it == cfg_->databases.end()) it = cfg_->databases.find("*");
    if (it == cfg_->databases.end()) {
      co_await fail("3D000", "no such database: " + quote(database()));
      co_return false;
    }
    DatabaseEntry entry = it->second;
    if (entry.name == "*" || entry.name.empty()) entry.name = database();
    if (entry.dbname.empty()) entry.dbname = database();
    if (!co_await authenticate()) co_return false;

    // The server login: the forced user of the [databases] line, else the client's.
    const std::string server_user = entry.user.value_or(slot_.user);
    std::string password;
    if (entry.password) {
      password = *entry.password;
    } else if (auto users = d_.users()) {
      if (auto u = users->find(server_user);
          u != users->end() && u->second.kind != Secret::Kind::scram)
        password = u->second.text;
    }
    std::vector<std::pair<std::string, std::string>> params;
    for (const auto& [k, v] : login_->startup.params) {
      if (k == "user" || k == "database" || k == "options" || k == "replication") continue;
      params.emplace_back(k, v);
    }
    if (!copts.server_options.empty()) params.emplace_back("options", copts.server_options);
    try {
      pool_ = d_.pool_for(entry, server_user, password, std::move(params)).get();
    } catch (const Error& e) {
      error_state = e.sqlstate().empty() ? "08006" : e.sqlstate();
      error_text = e.what();
    }
    if (!pool_) {
      co_await fail(error_state, error_text);
      co_return false;
    }
    pool_->clients.fetch_add(1, std::memory_order_relaxed);
    slot_.database = &pool_->database;  // the name the client gave (a wildcard entry's too)
    mode_ = pool_->mode;
    if (const std::string* app = login_->startup.param("application_name")) application_name_ = *app;
    purity_ = copts.purity;

    if (!copts.cclass.empty()) slot_.cclass = std::make_unique<const std::string>(copts.cclass);
    slot_.connect_time = static_cast<std::int64_t>(std::time(nullptr));
    {
      sockaddr_storage peer{};
      socklen_t len = sizeof peer;
      if (::getpeername(client_.native_handle(), reinterpret_cast<sockaddr*>(&peer), &len) == 0)
        slot_.set_peer(peer);
    }
    d_.register_client(&slot_);
    registered_ = true;

    auto server_params = pool_->server_params();
    if (!server_params || mode_ == PoolMode::session) {
      if (!co_await attach()) co_return false;  // sends the server's ParameterStatus set
    } else {
      // The pool's set, but the client's own application_name (it is SET on each server
      // connection it gets).
      for (const auto& [k, v] : *server_params)
        if (k != "application_name") pg::put_parameter_status(out(), k, v);
      pg::put_parameter_status(out(), "application_name", application_name_);
      app_name_sent_ = true;
      client_params_ = std::move(server_params);
    }
    pg::put_backend_key_data(out(), slot_.key);
    pg::put_ready_for_query(out(), 'I');
    if (!co_await flush_out()) co_return false;
    timer_.reset();            // startup's; made again if a timeout needs one
    login_.reset();
    if (server_ && mode_ != PoolMode::session && can_release()) detach(true);
    d_.log().debug("client " + slot_.user + "@" + database() + " logged in");
    co_return true;
  }

  // The admin console: simple queries only, answered by run_admin_command.
  asio::awaitable<void> admin_console(bool may_control) {
    while (true) {
      auto m = co_await read_auth_message();
      if (!m || m->type == pg::fe::kTerminate) co_return;
      bool answer = true;
      try {
        if (m->type == pg::fe::kQuery) {
          run_admin_command(d_, pg::parse_query(m->body), may_control, out());
        } else if (m->type != pg::fe::kSync) {
          pg::put_error_response(out(), "ERROR", "0A000",
                                 "the admin console takes simple queries only");
          answer = false;
        }
      } catch (const std::exception& e) {
        out().clear();
        pg::put_error_response(out(), "ERROR", "08P01", e.what());
      }
      if (answer) pg::put_ready_for_query(out(), 'I');
      if (!co_await flush_out()) co_return;
    }
  }

  asio::awaitable<bool> authenticate() {
    const AuthType type = cfg_->auth_type;
    if (type == AuthType::trust) {
      pg::put_auth_ok(out());
      co_return true;
    }
    auto users = d_.users();
    const Secret* secret = nullptr;
    if (users) {
      if (auto u = users->find(slot_.user); u != users->end()) secret = &u->second;
    }
    if (secret == nullptr) {
      co_await fail("28000", "no such user: " + quote(slot_.user));
      co_return false;
    }
    const std::string denied = "password authentication failed for user " + quote(slot_.user);
    bool ok = false;
    try {
      if (type == AuthType::plain) {
        pg::put_auth_cleartext(out());
        if (!co_await flush_out()) co_return false;
        auto m = co_await read_auth_message();
        if (!m || m->type != pg::fe::kPassword) co_return false;
        ok = plain_check(*secret, slot_.user, pg::parse_password(m->body));
      } else if (type == AuthType::md5 ||
                 (type == AuthType::scram_sha_256 && secret->kind == Secret::Kind::md5)) {
        // md5, also for scram-sha-256 users whose secret is an md5 hash (as PostgreSQL does).
        std::array<unsigned char, 4> salt{};
        const std::string random = random_bytes(salt.size());  // OpenSSL: cheap and unguessable
        std::memcpy(salt.data(), random.data(), std::min(random.size(), salt.size()));
        pg::put_auth_md5(out(), salt);
        if (!co_await flush_out()) co_return false;
        auto m = co_await read_auth_message();
        if (!m || m->type != pg::fe::kPassword) co_return false;
        ok = md5_check(*secret, slot_.user, salt, pg::parse_password(m->body));
      } else {
        ScramServer scram(*secret);
        const std::vector<std::string> mechanisms{"SCRAM-SHA-256"};
        pg::put_auth_sasl(out(), mechanisms);
        if (!co_await flush_out()) co_return false;
        auto m = co_await read_auth_message();
        if (!m || m->type != pg::fe::kPassword) co_return false;
        const pg::SaslInitial init = pg::parse_sasl_initial_response(m->body);
        if (init.mechanism != "SCRAM-SHA-256")
          throw AuthError("client selected an invalid SASL authentication mechanism");
        pg::put_auth_sasl_continue(out(), scram.first(init.data));
        if (!co_await flush_out()) co_return false;
        m = co_await read_auth_message();
        if (!m || m->type != pg::fe::kPassword) co_return false;
        const std::string final_message = scram.final(m->body);  // throws on a wrong proof
        pg::put_auth_sasl_final(out(), final_message);
        ok = true;
      }
    } catch (const AuthError& e) {
      ok = false;
      d_.log().info("authentication of " + quote(slot_.user) + " failed: " + e.what());
    } catch (const pg::ProtocolError& e) {
      ok = false;
    }
    if (!ok) {
      out().clear();
      co_await fail("28P01", denied);
      co_return false;
    }
    pg::put_auth_ok(out());
    co_return true;
  }

  // ---- server connections ----

  bool can_release() const noexcept {
    return server_ != nullptr && server_->status() == 'I' && outstanding_ == 0 && !unsynced_ &&
           !copy_ && from_client_.at_boundary() && from_server_.at_boundary();
  }

  AcquireOptions acquire_options() const {
    AcquireOptions o;
    if (slot_.cclass) o.cclass = *slot_.cclass;
    o.purity = purity_;
    return o;
  }

  // query_wait_timeout left since start; nullopt: no limit (wait).
  std::optional<std::chrono::milliseconds> wait_left(std::chrono::steady_clock::time_point start) {
    if (cfg_->query_wait_timeout.count() <= 0) return std::nullopt;
    const auto spent = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    return std::max(cfg_->query_wait_timeout - spent, std::chrono::milliseconds(0));
  }
  static Error wait_timeout_error() { return Error(ErrorCode::pool_timeout, "query_wait_timeout"); }

  // A server connection from the pool, within query_wait_timeout:
  // - max_db_connections: while the database has its cap of server connections open and this
  //   pool has none idle, an idle one of another pool of the database is closed to make room,
  //   or the client waits (polling, 5 ms) for room;
  // - reserve_pool_size: a client that has waited reserve_pool_timeout gets a server connection
  //   beyond pool_size (force_get) while fewer than reserve_pool_size such are held; it is
  //   closed when given back while the pool is over pool_size.
  asio::awaitable<Lease> acquire_server() {
    const auto start = std::chrono::steady_clock::now();
    if (pool_->limit->cap.load(std::memory_order_relaxed) > 0) {
      while (pool_->pool->idle() == 0 && pool_->limit->full()) {
        if (d_.evict_idle(*pool_)) continue;
        if (auto left = wait_left(start); left && left->count() == 0) throw wait_timeout_error();
        timer().expires_after(std::chrono::milliseconds(5));
        co_await timer().async_wait(asio::experimental::as_tuple(use_awaitable));
      }
    }
    AcquireOptions o = acquire_options();
    const std::uint32_t reserve = pool_->reserve_size.load(std::memory_order_relaxed);
    const std::chrono::milliseconds reserve_after(
        pool_->reserve_timeout_ms.load(std::memory_order_relaxed));
    auto left = wait_left(start);
    if (reserve == 0) {
      if (left) o.wait_timeout = std::max(*left, std::chrono::milliseconds(1));
      Lease lease = co_await pool_->pool->async_acquire(o);
      co_return lease;
    }
    o.get_mode = GetMode::timed_wait;
    o.wait_timeout = std::max(left ? std::min(*left, reserve_after) : reserve_after,
                              std::chrono::milliseconds(1));
    bool waited_long = false;
    Lease lease;
    try {
      lease = co_await pool_->pool->async_acquire(o);
    } catch (const Error& e) {
      if (e.code() != ErrorCode::pool_timeout) throw;
      waited_long = true;
    }
    if (!waited_long) co_return lease;
    left = wait_left(start);
    if (left && left->count() == 0) throw wait_timeout_error();
    std::uint32_t used = pool_->reserve_used.load(std::memory_order_relaxed);
    while (used < reserve && !pool_->reserve_used.compare_exchange_weak(used, used + 1)) {
    }
    if (used < reserve) {
      AcquireOptions forced = acquire_options();
      forced.get_mode = GetMode::force_get;
      try {
        lease = co_await pool_->pool->async_acquire(forced);
      } catch (...) {
        pool_->reserve_used.fetch_sub(1);
        throw;
      }
      reserve_held_ = true;
      d_.log().debug("client " + slot_.user + "@" + database() + " got a reserve server connection");
      co_return lease;
    }
    AcquireOptions rest = acquire_options();
    if (left) rest.wait_timeout = std::max(*left, std::chrono::milliseconds(1));
    lease = co_await pool_->pool->async_acquire(rest);
    co_return lease;
  }

  // track_extra_parameters for application_name: the server connections' startup parameters
  // are the pool's first client's, so a client whose application_name differs from the server
  // connection's has it SET there (one round trip, only when they differ). false: the server
  // connection failed.
  asio::awaitable<bool> apply_client_params() {
    const auto& params = server_->parameters();
    const auto it = params.find("application_name");
    if (it == params.end() || it->second == application_name_) co_return true;
    std::string literal = "'";
    for (const char ch : application_name_) {
      literal.push_back(ch);
      if (ch == '\'') literal.push_back(ch);
    }
    literal.push_back('\'');
    std::string q;
    pg::put_query(q, "SET application_name = " + literal);
    auto [wec, written] = co_await asio::async_write(*server_sock_, asio::buffer(q),
                                                     asio::experimental::as_tuple(use_awaitable));
    if (wec) co_return false;
    std::string in;
    char buf[1024];
    timer().expires_after(cfg_->server_connect_timeout.count() > 0 ? cfg_->server_connect_timeout
                                                                  : std::chrono::seconds(15));
    while (true) {
      std::size_t size = 0;
      if (auto m = pg::read_message(in, &size)) {
        const char type = m->type;
        if (type == pg::be::kParameterStatus) {
          auto [name, value] = pg::parse_parameter_status(m->body);
          server_->set_parameter(std::move(name), std::move(value));
        } else if (type == pg::be::kErrorResponse) {
          d_.log().warning("SET application_name for client " + slot_.user + "@" + database() + ": " +
                           pg::parse_error_fields(m->body).message);
        } else if (type == pg::be::kReadyForQuery) {
          server_->set_status(pg::parse_ready_for_query(m->body));
          timer().cancel();
          co_return in.size() == size;  // nothing may follow the ReadyForQuery
        }
        in.erase(0, size);
        continue;
      }
      auto r = co_await (server_sock_->async_read_some(
                             asio::buffer(buf), asio::experimental::as_tuple(use_awaitable)) ||
                         timer().async_wait(asio::experimental::as_tuple(use_awaitable)));
      if (r.index() == 1) co_return false;
      auto [ec, n] = std::get<0>(r);
      if (ec || n == 0) co_return false;
      in.append(buf, n);
    }
  }

  asio::awaitable<bool> attach() {
    std::string error_state = "08P01", error_text;  // out of catch blocks (no co_await there)
    Lease lease;
    try {
      lease = co_await acquire_server();
    } catch (const Error& e) {
      if (e.code() == ErrorCode::pool_timeout) {
        error_state = "08P01";
        error_text = "query_wait_timeout";
      } else {
        error_state = e.sqlstate().empty() ? "08006" : e.sqlstate();
        error_text = e.what();
      }
    }
    if (!lease) {
      co_await fail(error_state, error_text);
      co_return false;
    }
    server_ = BackendConnection::from(*lease);
    lease_ = std::move(lease);
    server_sock_ = &server_->socket_on(client_.get_executor());
    d_.attached.fetch_add(1, std::memory_order_relaxed);
    {
      std::lock_guard lock(slot_.lock);
      slot_.attached = true;
      slot_.server = &server_->target();
      slot_.server_key = server_->key();
    }
    pool_->set_server_params(server_->parameters());
    if (!co_await apply_client_params()) {
      co_await server_lost();
      co_return false;
    }
    // The client keeps what it was told: tell it what differs on this server connection.
    const PoolEntry::Params& now = server_->parameters();
    if (!client_params_) {  // told nothing yet (login): all of it, and share the pool's set
      for (const auto& [k, v] : now) pg::put_parameter_status(out(), k, v);
      auto shared = pool_->server_params();
      client_params_ = shared && *shared == now ? std::move(shared)
                                                : std::make_shared<const PoolEntry::Params>(now);
      if (const auto it = now.find("application_name"); it != now.end()) {
        application_name_ = it->second;
        app_name_sent_ = true;
      }
    } else {
      for (const auto& [k, v] : now) {
        if (!seen_param(k, v)) {
          pg::put_parameter_status(out(), k, v);
          see_param(k, v);
        }
      }
    }
    // outstanding_, unsynced_ and copy_ stay: they count what the client sent for this server
    // connection (the chunk that made the session attach; detach() zeroed them).
    from_server_.reset();
    co_return true;
  }

  // Whether the client was told name = value. Its view is its pool's shared set (copied on the
  // first difference) with its own application_name.
  bool seen_param(const std::string& name, const std::string& value) const {
    if (name == "application_name") return app_name_sent_ && application_name_ == value;
    if (!client_params_) return false;
    const auto it = client_params_->find(name);
    return it != client_params_->end() && it->second == value;
  }
  void see_param(const std::string& name, const std::string& value) {
    if (name == "application_name") {
      application_name_ = value;
      app_name_sent_ = true;
      return;
    }
    if (seen_param(name, value)) return;
    auto copy = client_params_ ? std::make_shared<PoolEntry::Params>(*client_params_)
                               : std::make_shared<PoolEntry::Params>();
    (*copy)[name] = value;
    client_params_ = std::move(copy);
  }

  // Gives the server connection back (clean: to the pool; else closed).
  void detach(bool clean) noexcept {
    server_sock_ = nullptr;
    {
      std::lock_guard lock(slot_.lock);
      slot_.attached = false;
      slot_.server = nullptr;
    }
    if (clean && server_->status() == 'I' && !server_->broken())
      lease_.release();
    else
      lease_.drop();
    server_ = nullptr;
    if (reserve_held_) {
      pool_->reserve_used.fetch_sub(1, std::memory_order_relaxed);
      reserve_held_ = false;
    }
    d_.attached.fetch_sub(1, std::memory_order_relaxed);
    named_ = false;
    outstanding_ = 0;
    unsynced_ = false;
    copy_ = false;
    from_server_.reset();
  }

  // The client is gone or done: session mode resets the connection (server_reset_query) off the
  // loop before giving it back; a connection not idle is closed.
  asio::awaitable<void> leave_server() {
    const bool clean = can_release();
    if (clean && mode_ == PoolMode::session && !cfg_->server_reset_query.empty()) {
      bool ok = true;
      server_sock_ = nullptr;  // the reset runs off this loop, on the blocking connection
      try {
        co_await reservoir::async_reset(*lease_);
      } catch (...) {
        ok = false;
      }
      detach(ok);
      co_return;
    }
    if (clean && named_) {
      const bool ok = co_await forget_named();
      detach(ok);
      co_return;
    }
    detach(clean);
  }

  // Transaction and statement mode: the client named prepared statements on this server
  // connection. They go with the transaction (DEALLOCATE ALL), so that the next client of the
  // connection can neither collide with their names (42P05) nor run one of them as its own; the
  // client's later use of a name gets 26000 (prepared statement does not exist), which drivers
  // answer by preparing again. false: the server connection failed (it is marked broken).
  asio::awaitable<bool> forget_named() {
    named_ = false;
    bool ok = true;
    try {
      co_await reservoir::async_execute(*lease_, "DEALLOCATE ALL");
    } catch (const std::exception& e) {
      d_.log().warning("DEALLOCATE ALL for client " + slot_.user + "@" + database() + ": " +
                       e.what());
      ok = false;
    }
    if (!ok) server_->mark_broken();
    co_return ok;
  }

  asio::awaitable<void> server_lost() {
    if (server_) {
      server_->mark_broken();
      detach(false);
    }
    co_await fail("08006", "server connection lost");
  }

  // ---- the relay ----

  // What a non-blocking read found: bytes (> 0), end of stream (0), nothing yet, or an error.
  static constexpr ssize_t kNothingYet = -1;
  static constexpr ssize_t kReadError = -2;
  static ssize_t recv_now(int fd, char* p, std::size_t n) noexcept {
    while (true) {
      const ssize_t got = ::recv(fd, p, n, MSG_DONTWAIT);
      if (got >= 0) return got;
      if (errno == EINTR) continue;
      return errno == EAGAIN || errno == EWOULDBLOCK ? kNothingYet : kReadError;
    }
  }

  // Both sockets stay registered with the event loop (edge-triggered) for their whole life, so a
  // wait sees only bytes that arrive after it starts: whatever may have come while nothing
  // waited is read first (directly, or through Asio's reads, which track that). Waits hold no
  // buffer. Returns true when the client is idle (no server connection, nothing unread): the
  // caller parks it. false: the session is over.
  asio::awaitable<bool> relay() {
    const int cfd = client_.native_handle();
    using asio::experimental::deferred;
    // The side a wait found readable: read without trying the other one first.
    enum class Ready : std::uint8_t { unknown, client, server } ready = Ready::unknown;
    // Lent while bytes move (see lend()); in this frame, so a parked client holds none.
    Buffer<kClientBuffer> cbuf_;
    Buffer<kServerBuffer> sbuf_;
    while (true) {
      cbuf_.reset();
      sbuf_.reset();
      if (server_ == nullptr) {
        cbuf_ = lend<kClientBuffer>();
        const ssize_t got = recv_now(cfd, cbuf_.get(), kClientBuffer);
        if (got == kNothingYet) {
          cbuf_.reset();  // parked clients hold no buffer
          co_return true;
        }
        if (got <= 0) co_return false;  // the client left (or its socket failed)
        if (!co_await from_client_chunk(cbuf_.get(), static_cast<std::size_t>(got)))
          co_return false;
        continue;
      }
      if (outstanding_ > 0 && !unsynced_ && !copy_) {
        // A reply is due and the client owes nothing: the server only.
        sbuf_ = lend<kServerBuffer>();
        auto [ec, n] = co_await server_sock_->async_read_some(
            asio::buffer(sbuf_.get(), kServerBuffer), asio::experimental::as_tuple(use_awaitable));
        if (ec || n == 0) {
          co_await server_lost();
          co_return false;
        }
        if (!co_await from_server_chunk(sbuf_.get(), n)) co_return false;
        continue;
      }
      // Either side may speak: an idle session-mode client (notifications), an open transaction,
      // an extended-protocol batch before its Sync, COPY.
      if (ready != Ready::client) {
        sbuf_ = lend<kServerBuffer>();
        const ssize_t got = recv_now(server_->fd(), sbuf_.get(), kServerBuffer);
        if (got != kNothingYet) {
          ready = Ready::unknown;
          if (got <= 0) {
            co_await server_lost();
            co_return false;
          }
          if (!co_await from_server_chunk(sbuf_.get(), static_cast<std::size_t>(got)))
            co_return false;
          continue;
        }
        sbuf_.reset();
      }
      if (ready != Ready::server) {
        cbuf_ = lend<kClientBuffer>();
        const ssize_t got = recv_now(cfd, cbuf_.get(), kClientBuffer);
        if (got != kNothingYet) {
          ready = Ready::unknown;
          if (got <= 0) co_return false;  // serve() gives the server connection back (or closes)
          if (!co_await from_client_chunk(cbuf_.get(), static_cast<std::size_t>(got)))
            co_return false;
          continue;
        }
        cbuf_.reset();
      }
      const bool idle_in_tx = server_->status() != 'I' && outstanding_ == 0;
      const bool idle = server_->status() == 'I' && outstanding_ == 0 && !unsynced_ && !copy_;
      const std::chrono::milliseconds limit = idle_in_tx ? cfg_->idle_transaction_timeout
                                              : idle     ? cfg_->client_idle_timeout
                                                         : std::chrono::milliseconds(0);
      std::size_t first = 0;
      if (limit.count() > 0) {
        timer().expires_after(limit);
        auto [order, e1, e2, e3] =
            co_await asio::experimental::make_parallel_group(
                client_.async_wait(Socket::wait_read, deferred),
                server_sock_->async_wait(asio::posix::stream_descriptor::wait_read, deferred),
                timer().async_wait(deferred))
                .async_wait(asio::experimental::wait_for_one(), use_awaitable);
        first = order[0];
      } else {
        auto [order, e1, e2] =
            co_await asio::experimental::make_parallel_group(
                client_.async_wait(Socket::wait_read, deferred),
                server_sock_->async_wait(asio::posix::stream_descriptor::wait_read, deferred))
                .async_wait(asio::experimental::wait_for_one(), use_awaitable);
        first = order[0];
      }
      if (first == 2) {
        if (idle_in_tx) {
          detach(false);
          co_await fail("25P03", "idle transaction timeout");
        } else {
          co_await fail("08P01", "client_idle_timeout");  // serve() returns the connection
        }
        co_return false;
      }
      ready = first == 0 ? Ready::client : Ready::server;
    }
  }

  // Client bytes: count what needs answers, stop at Terminate, forward the rest.
  asio::awaitable<bool> from_client_chunk(const char* p, std::size_t n) {
    std::string error_state = "08P01", error_text;  // out of catch blocks (no co_await there)
    std::size_t forward = n;
    bool terminate = false;
    try {
      from_client_.feed(p, n, [&](char type, std::string_view, bool, std::size_t end) {
        if (terminate) return;
        switch (type) {
          case pg::fe::kQuery:
          case pg::fe::kFunctionCall:
            ++outstanding_;
            break;
          case pg::fe::kSync:
            ++outstanding_;
            unsynced_ = false;
            break;
          case pg::fe::kParse:
            // A named statement outlives the transaction on the server connection: it is
            // deallocated before the connection goes back (forget_named()).
            if (from_client_.first_body_byte() != 0 && mode_ != PoolMode::session) named_ = true;
            unsynced_ = true;
            break;
          case pg::fe::kBind:
          case pg::fe::kExecute:
          case pg::fe::kDescribe:
          case pg::fe::kClose:
          case pg::fe::kFlush:
            unsynced_ = true;
            break;
          case pg::fe::kTerminate:
            terminate = true;
            forward = end - 5;
            break;
          default:
            break;
        }
      });
    } catch (const pg::ProtocolError& e) {
      error_state = e.sqlstate();
      error_text = e.what();
    }
    if (!error_text.empty()) {
      if (server_) detach(false);
      co_await fail(error_state, error_text);
      co_return false;
    }
    if (forward > 0) {
      if (server_ == nullptr) {
        if (d_.shutting_down()) {
          co_await fail("57P01", "reservoird is shutting down");
          co_return false;
        }
        while (d_.paused() && !d_.shutting_down()) {  // PAUSE: hold new work until RESUME
          timer().expires_after(std::chrono::milliseconds(20));
          co_await timer().async_wait(asio::experimental::as_tuple(use_awaitable));
        }
        if (!co_await attach()) co_return false;
        if (out_ && !co_await flush_out()) co_return false;
      }
      auto [ec, written] = co_await asio::async_write(*server_sock_, asio::buffer(p, forward),
                                                      asio::experimental::as_tuple(use_awaitable));
      if (ec) {
        co_await server_lost();
        co_return false;
      }
    }
    co_return !terminate;
  }

  // Server bytes: note ReadyForQuery and ParameterStatus, forward the chunk, maybe release.
  asio::awaitable<bool> from_server_chunk(const char* p, std::size_t n) {
    std::string error_state = "08P01", error_text;  // out of catch blocks (no co_await there)
    bool ready = false;
    std::size_t refused_at = 0;  // statement mode: where the ReadyForQuery opening a block starts
    try {
      from_server_.feed(p, n, [&](char type, std::string_view body, bool, std::size_t end) {
        switch (type) {
          case pg::be::kReadyForQuery:
            server_->set_status(pg::parse_ready_for_query(body));
            if (outstanding_ > 0) --outstanding_;
            copy_ = false;
            ready = true;
            if (mode_ == PoolMode::statement && server_->status() != 'I' && refused_at == 0 &&
                end >= 6)
              refused_at = end - 6 + 1;  // +1: 0 means none
            break;
          case pg::be::kParameterStatus: {
            auto [name, value] = pg::parse_parameter_status(body);
            see_param(name, value);  // application_name: the client's SET
            server_->set_parameter(std::move(name), std::move(value));
            break;
          }
          case pg::be::kCopyInResponse:
          case pg::be::kCopyBothResponse:
            copy_ = true;
            break;
          default:
            break;
        }
      });
    } catch (const pg::ProtocolError& e) {
      error_text = e.what();
    }
    if (!error_text.empty()) {
      co_await server_lost();
      co_return false;
    }
    if (refused_at > 0) {
      // Statement mode and the server opened a transaction block: the client gets the error in
      // place of that ReadyForQuery, as the result of its statement; the server connection is
      // closed (it is inside the block).
      co_await write_client(p, refused_at - 1);
      detach(false);
      co_await fail("08P01", "transaction blocks not allowed in statement pooling mode");
      co_return false;
    }
    const bool refuse_block = ready && mode_ == PoolMode::statement && server_->status() != 'I';
    // Back to the pool before the client hears ReadyForQuery: the client may start its next
    // transaction (or ask SHOW POOLS) the moment it does, and the connection is free by then.
    const bool release = ready && mode_ != PoolMode::session && !refuse_block && can_release();
    if (release) {
      if (named_ && !co_await forget_named()) {
        co_await server_lost();
        co_return false;
      }
      detach(true);
    }
    if (!co_await write_client(p, n)) co_return false;  // run() closes or returns the server
    if (refuse_block) {
      detach(false);  // the ReadyForQuery was split across reads: the error comes after it
      co_await fail("08P01", "transaction blocks not allowed in statement pooling mode");
      co_return false;
    }
    if (release && d_.shutting_down()) {
      co_await fail("57P01", "reservoird is shutting down");
      co_return false;
    }
    co_return true;
  }

  // Ordered to pack (the session is most of an idle client's memory): pointers and objects
  // first, the small fields at the end.
  Daemon& d_;
  Socket client_;
  std::unique_ptr<asio::steady_timer> timer_;  // see timer(): made when first needed
  std::shared_ptr<const Config> cfg_;
  std::string application_name_;  // the client's (startup packet, then its own SETs)
  PoolEntry* pool_ = nullptr;     // the daemon's pools live as long as it does
  // The client's user, database and class (constant after login), its fake BackendKeyData, and
  // where a cancel goes: in the daemon's table of clients (SHOW CLIENTS, CancelRequest) from
  // login to the destructor.
  ClientSlot slot_;

  Lease lease_;
  BackendConnection* server_ = nullptr;
  asio::posix::stream_descriptor* server_sock_ = nullptr;  // server_'s, on this loop
  std::shared_ptr<const PoolEntry::Params> client_params_;  // see seen_param()

  pg::FrameScanner from_client_;    // frames only: no body of the client's is needed
  pg::MessageScanner from_server_;  // with the bodies of ReadyForQuery and ParameterStatus
  // Messages of our own for the client, made when the first is put (out()) and freed when
  // flushed: most clients have none most of the time.
  std::unique_ptr<std::string> out_;
  // What only startup and login (and the admin console) need: freed once a client is in.
  struct LoginState {
    pg::StartupPacket startup;
    std::string database;  // as the client named it (then slot_.database)
    std::string in;  // bytes read during authentication (read_auth_message)
    std::size_t used = 0;
  };
  std::unique_ptr<LoginState> login_ = std::make_unique<LoginState>();

  int outstanding_ = 0;    // Query/Sync/FunctionCall sent without their ReadyForQuery yet
  Purity purity_ = Purity::self;  // DRCP purity asked for at startup (the class: slot_.cclass)
  PoolMode mode_ = PoolMode::session;
  bool unsynced_ = false;  // extended-protocol messages sent since the last Sync
  bool copy_ = false;      // COPY FROM STDIN (or COPY BOTH) in progress
  bool named_ = false;     // named prepared statements on server_ (see forget_named())
  bool registered_ = false;
  bool counted_ = false;
  bool reserve_held_ = false;  // server_ is one of the pool's reserve_pool_size extras
  bool app_name_sent_ = false;
  bool parked_ = false;        // waiting in park()
  bool idle_expired_ = false;  // client_idle_timeout while parked
};

}  // namespace

asio::awaitable<void> serve_client(Daemon& daemon, Socket socket) {
  const int one = 1;
  if (socket.local_endpoint().protocol().family() != AF_UNIX)
    ::setsockopt(socket.native_handle(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  co_await Session::serve(std::make_shared<Session>(daemon, std::move(socket)));
}

}  // namespace reservoir::server
