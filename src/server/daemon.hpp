// src/server/daemon.hpp: reservoird's process: config and auth_file (reloadable), listeners on
// `workers` threads (one io_context each, SO_REUSEPORT acceptors), pools per (database, user),
// the cancel-key table, client limits, signals and logging.
//
//   reservoir::server::Daemon d("/etc/reservoird.ini");   // throws ConfigError
//   return d.run();                                       // until SIGTERM/SIGINT/shutdown()
//
// Thread safety: every public member may be called from any thread (sessions run on several).
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "reservoir/pool.hpp"
#include "server/auth.hpp"
#include "server/backend.hpp"
#include "server/client_table.hpp"
#include "server/config.hpp"
#include "server/pg_codec.hpp"

struct sockaddr_storage;

namespace reservoir::server {

// Leveled logging to stderr or the logfile, one line per call, never a password.
class Log {
 public:
  enum class Level : std::uint8_t { error, warning, info, debug };
  void configure(const std::string& level, const std::string& file);
  bool enabled(Level l) const noexcept { return l <= level_.load(std::memory_order_relaxed); }
  void write(Level l, const std::string& message);
  void error(const std::string& m) { write(Level::error, m); }
  void warning(const std::string& m) { write(Level::warning, m); }
  void info(const std::string& m) {
    if (enabled(Level::info)) write(Level::info, m);
  }
  void debug(const std::string& m) {
    if (enabled(Level::debug)) write(Level::debug, m);
  }
  ~Log();

 private:
  std::atomic<Level> level_{Level::info};
  std::mutex mutex_;
  std::FILE* file_ = nullptr;  // guarded by mutex_; nullptr: stderr
};

// One pool of server connections: one (database, user).
struct PoolEntry {
  std::string database;  // as clients name it
  std::string user;      // the server user
  PoolMode mode = PoolMode::session;
  std::shared_ptr<BackendDriver> driver;
  std::shared_ptr<Pool> pool;
  std::atomic<std::uint32_t> clients{0};
  // The database's max_db_connections count (shared with its other pools; never null).
  std::shared_ptr<DbLimit> limit;
  // reserve_pool_size / reserve_pool_timeout (updated by reload), and the extra server
  // connections beyond pool_size that clients hold now.
  std::atomic<std::uint32_t> reserve_size{0};
  std::atomic<std::int64_t> reserve_timeout_ms{0};
  std::atomic<std::uint32_t> reserve_used{0};

  // The ParameterStatus set new clients of this pool are sent (from its first server
  // connection); null until one logged in. One immutable set that every client's view starts as
  // (a client copies it only if a server connection reports something else).
  using Params = std::map<std::string, std::string>;
  std::shared_ptr<const Params> server_params() const {
    std::lock_guard lock(mutex);
    return params;
  }
  void set_server_params(const Params& p) {
    std::lock_guard lock(mutex);
    if (!params) params = std::make_shared<const Params>(p);
  }

  mutable std::mutex mutex;
  std::shared_ptr<const Params> params;  // guarded by mutex
};

// A logged-in client as the daemon knows it: where its CancelRequest must go (the server
// connection it is on, if any) and what SHOW CLIENTS and SHOW SERVERS list. Lives inside the
// client's session; the daemon's table points to it from register_client() until forget_client(),
// and reads it only under its own mutex (so the session cannot end meanwhile) and `lock`.
struct ClientSlot {
  // Guards attached, server and server_key: the session writes them on every attach and detach.
  class SpinLock {
   public:
    void lock() noexcept {
      while (flag_.test_and_set(std::memory_order_acquire)) flag_.wait(true, std::memory_order_relaxed);
    }
    void unlock() noexcept {
      flag_.clear(std::memory_order_release);
      flag_.notify_one();
    }

   private:
    std::atomic_flag flag_;
  };
  // Packed (it is in every client's session): the small fields first.
  mutable SpinLock lock;
  bool attached = false;
  // The client (constant after login): its port, and its address as addr_text() gives it.
  std::uint16_t client_port = 0;
  enum class Family : std::uint8_t { none, inet, inet6, unix_socket };
  Family family = Family::none;
  std::array<unsigned char, 16> ip{};  // inet: the first 4 bytes; inet6: all (network order)
  pg::BackendKey key;                  // the client's (fake) BackendKeyData (register_client())
  // While attached: its BackendKeyData, and the server connection's target (host, port; it lives
  // as long as the connection, which the session holds while attached).
  pg::BackendKey server_key;
  const BackendTarget* server = nullptr;
  std::int64_t connect_time = 0;  // Unix seconds
  std::string user;
  std::unique_ptr<const std::string> cclass;  // null: the default class (most clients)
  const std::string* database = nullptr;      // its pool's (PoolEntry::database)

  // Sets family, ip and client_port from getpeername()'s address.
  void set_peer(const ::sockaddr_storage& peer) noexcept;
  // "127.0.0.1", "::1", "unix", or "" (unknown).
  std::string addr_text() const;
};

// The 64 bits of a BackendKeyData (pid high, key low), and those of a slot's client.
inline std::uint64_t key_bits(pg::BackendKey k) {
  return (std::uint64_t{static_cast<std::uint32_t>(k.pid)} << 32) |
         static_cast<std::uint32_t>(k.key);
}
inline std::uint64_t slot_key(const ClientSlot& slot) { return key_bits(slot.key); }

// A copy of a ClientSlot (Daemon::clients()).
struct ClientInfo {
  pg::BackendKey key;  // the client's (fake) BackendKeyData
  bool attached = false;
  std::string host;  // the server connection's, while attached
  std::uint16_t port = 0;
  pg::BackendKey server_key;
  std::string user, database, addr, cclass;
  std::uint16_t client_port = 0;
  std::int64_t connect_time = 0;
};

class Daemon {
 public:
  // Loads the config and the auth_file. Throws ConfigError.
  explicit Daemon(std::string config_path);
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Listens and serves until shutdown; returns the process exit code. SIGTERM/SIGINT: stop
  // accepting, wait (up to 10 s) for sessions on a server connection to finish, exit 0. SIGHUP:
  // reload().
  int run();
  void shutdown() noexcept;
  // Re-reads config and auth_file; on error logs it and keeps the old ones. Returns success.
  bool reload();

  // --- for sessions ---
  std::shared_ptr<const Config> config() const;
  std::shared_ptr<const std::map<std::string, Secret>> users() const;
  Log& log() noexcept { return log_; }
  bool shutting_down() const noexcept { return shutting_down_.load(std::memory_order_relaxed); }

  // The pool for (database entry, server user), created on first use with startup_params as
  // its servers' startup parameters. Throws reservoir::Error.
  // Never blocks: a new pool opens its min_pool_size connections in the background.
  std::shared_ptr<PoolEntry> pool_for(
      const DatabaseEntry& db, const std::string& server_user, const std::string& password,
      std::vector<std::pair<std::string, std::string>> startup_params);
  std::vector<std::shared_ptr<PoolEntry>> pools() const;
  // max_db_connections: closes one idle server connection of another pool of `entry`'s
  // database, to make room for it. Returns whether one was closed. Does not block on the
  // network beyond a due server_check_query or purity reset of the connection it closes.
  bool evict_idle(const PoolEntry& entry);

  // A fresh fake BackendKeyData for a client (also put in slot->key), mapped to its slot until
  // forget_client() (which the slot's owner must call before the slot goes).
  pg::BackendKey register_client(ClientSlot* slot);
  void forget_client(pg::BackendKey key);
  // Forwards a client's CancelRequest to the server connection it is on (in the background).
  void cancel(pg::BackendKey key);

  // max_client_conn: false when the limit is reached. leave_client() for each true.
  bool enter_client() noexcept;
  void leave_client() noexcept;
  std::uint32_t clients() const noexcept { return clients_.load(std::memory_order_relaxed); }
  // Sessions holding a server connection (shutdown waits for them).
  std::atomic<std::uint32_t> attached{0};
  // The registered clients now (SHOW CLIENTS / SERVERS).
  std::vector<ClientInfo> clients_now() const;
  // PAUSE / RESUME: while paused, clients get no new server connection (they wait).
  void pause(bool on) noexcept { paused_.store(on); }
  bool paused() const noexcept { return paused_.load(std::memory_order_relaxed); }

 private:
  struct Impl;
  std::string path_;
  Log log_;
  std::atomic<bool> shutting_down_{false};
  std::atomic<bool> paused_{false};
  std::atomic<std::uint32_t> clients_{0};

  mutable std::mutex mutex_;
  std::shared_ptr<const Config> config_;                        // guarded by mutex_
  std::shared_ptr<const std::map<std::string, Secret>> users_;  // guarded by mutex_
  std::map<std::pair<std::string, std::string>, std::shared_ptr<PoolEntry>> pools_;  // mutex_
  PointerTable<ClientSlot, &slot_key> cancel_;                  // guarded by mutex_
  std::map<std::string, std::shared_ptr<DbLimit>> limits_;       // by database; mutex_
  std::unique_ptr<Impl> impl_;
};

// The server target for a database entry and user (host, port, dbname, password, queries).
BackendTarget make_target(const Config& config, const DatabaseEntry& db,
                          const std::string& server_user, const std::string& password);

}  // namespace reservoir::server
