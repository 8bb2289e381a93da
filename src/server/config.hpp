// src/server/config.hpp: reservoird's configuration: an INI file in PgBouncer's format for the
// settings reservoird supports, a main section named [reservoird] or [pgbouncer], plus
// [databases] and the users' auth_file. Pure code: parsing and checking, no I/O but reading files.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "server/auth.hpp"

namespace reservoir::server {

// A bad value, an unknown setting, a bad line: the message names the file and the line
// ("reservoird.ini:12: default_pool_size: not a number: 'ten'").
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

enum class PoolMode : std::uint8_t { session, transaction, statement };
enum class AuthType : std::uint8_t { scram_sha_256, md5, plain, trust };

// One [databases] line: name = host=... port=... dbname=... user=... password=... pool_size=...
// pool_mode=... (unset fields fall back to the main section's defaults).
struct DatabaseEntry {
  std::string name;  // what clients ask for
  std::string host = "127.0.0.1";
  std::uint16_t port = 5432;
  std::string dbname;                   // on the server; empty = name
  std::optional<std::string> user;      // forced server user; unset = the client's
  std::optional<std::string> password;  // for the forced user; unset = auth_file's
  std::optional<std::uint32_t> pool_size;
  std::optional<std::uint32_t> min_pool_size;
  std::optional<std::uint32_t> reserve_pool;
  std::optional<PoolMode> pool_mode;
  std::optional<std::uint32_t> max_db_connections;
};

struct Config {
  std::string path;  // the file it came from
  // [reservoird] / [pgbouncer]
  std::string listen_addr = "127.0.0.1";
  std::uint16_t listen_port = 6432;
  std::string unix_socket_dir;  // empty: none
  AuthType auth_type = AuthType::scram_sha_256;
  std::string auth_file;
  PoolMode pool_mode = PoolMode::session;
  std::uint32_t default_pool_size = 20;
  std::uint32_t min_pool_size = 0;
  std::uint32_t reserve_pool_size = 0;
  std::chrono::milliseconds reserve_pool_timeout{5'000};
  std::uint32_t max_client_conn = 100;
  std::uint32_t max_db_connections = 0;  // 0: unlimited
  std::string server_reset_query = "DISCARD ALL";
  std::string server_check_query = "select 1";
  std::chrono::milliseconds server_check_delay{30'000};
  std::chrono::milliseconds server_lifetime{3'600'000};
  std::chrono::milliseconds server_idle_timeout{600'000};
  std::chrono::milliseconds server_connect_timeout{15'000};
  std::chrono::milliseconds query_wait_timeout{120'000};
  std::chrono::milliseconds client_idle_timeout{0};  // 0: off
  std::chrono::milliseconds idle_transaction_timeout{0};
  std::vector<std::string> admin_users;
  std::vector<std::string> stats_users;
  std::string logfile;  // empty: stderr
  std::string pidfile;
  std::string log_level = "info";                  // error, warning, info, debug
  std::uint32_t workers = 0;                       // 0: the number of cores
  std::map<std::string, DatabaseEntry> databases;  // by name; "*" is the fallback entry
};

// Parses the file's text. Times accept PgBouncer's units (a plain number is seconds, as in
// PgBouncer; "500ms", "5s", "2min", "1h" also). Throws ConfigError.
Config parse_config(const std::string& text, const std::string& path);
Config load_config(const std::string& path);  // reads the file, then parse_config

// config.workers, or for 0 the number of cores (at least 1).
std::uint32_t worker_count(const Config& config);

// auth_file: PgBouncer's userlist.txt format, one user a line: "user" "secret" (quotes
// required, "" inside quotes is a quote; lines starting with ; or # are comments). Throws
// ConfigError naming the line.
std::map<std::string, Secret> parse_auth_file(const std::string& text, const std::string& path);
std::map<std::string, Secret> load_auth_file(const std::string& path);

}  // namespace reservoir::server
