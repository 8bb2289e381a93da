// src/server/admin.cpp: the admin console's commands, answered from the daemon's pools (the
// engine's PoolStats), clients and config.
#include "server/admin.hpp"

#include <algorithm>
#include <cctype>
#include <ctime>
#include <optional>
#include <vector>

#include "reservoir/stats.hpp"
#include "server/daemon.hpp"
#include "server/pg_codec.hpp"

namespace reservoir::server {
namespace {

using Row = std::vector<std::optional<std::string>>;

std::string upper(std::string_view s) {
  std::string out;
  for (const char c : s)
    out.push_back(static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  return out;
}

std::string n(std::uint64_t v) { return std::to_string(v); }

const char* mode_name(PoolMode m) {
  switch (m) {
    case PoolMode::session:
      return "session";
    case PoolMode::transaction:
      return "transaction";
    case PoolMode::statement:
      return "statement";
  }
  return "?";
}

const char* auth_name(AuthType a) {
  switch (a) {
    case AuthType::scram_sha_256:
      return "scram-sha-256";
    case AuthType::md5:
      return "md5";
    case AuthType::plain:
      return "plain";
    case AuthType::trust:
      return "trust";
  }
  return "?";
}

std::string seconds(std::chrono::milliseconds ms) {
  if (ms.count() % 1000 == 0) return std::to_string(ms.count() / 1000);
  return std::to_string(ms.count()) + "ms";
}

std::string timestamp(std::int64_t unix_seconds) {
  const std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  ::localtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

void table(std::string& out, const std::vector<std::string>& columns, const std::vector<Row>& rows,
           const std::string& tag) {
  pg::put_row_description(out, columns);
  for (const auto& r : rows) pg::put_data_row(out, r);
  pg::put_command_complete(out, tag);
}

}  // namespace

bool is_admin_database(std::string_view database) noexcept {
  return database == "reservoir" || database == "pgbouncer";
}

void run_admin_command(Daemon& d, std::string_view sql, bool may_control, std::string& out) {
  std::string text(sql);
  while (!text.empty() &&
         (std::isspace(static_cast<unsigned char>(text.back())) || text.back() == ';'))
    text.pop_back();
  std::size_t start = 0;
  while (start < text.size() && std::isspace(static_cast<unsigned char>(text[start]))) ++start;
  std::vector<std::string> words;
  {
    std::string cur;
    for (std::size_t i = start; i < text.size(); ++i) {
      if (std::isspace(static_cast<unsigned char>(text[i]))) {
        if (!cur.empty()) words.push_back(upper(cur));
        cur.clear();
      } else {
        cur.push_back(text[i]);
      }
    }
    if (!cur.empty()) words.push_back(upper(cur));
  }
  if (words.empty()) {
    pg::put_empty_query_response(out);
    return;
  }
  const auto cfg = d.config();
  if (words[0] == "SHOW" && words.size() == 2) {
    const std::string& what = words[1];
    if (what == "VERSION") {
      table(out, {"version"}, {{std::string("reservoird 0.1.0")}}, "SHOW");
      return;
    }
    if (what == "POOLS") {
      std::vector<Row> rows;
      for (const auto& p : d.pools()) {
        const PoolStats s = p->pool->stats();
        rows.push_back({p->database, p->user, n(p->clients.load()), n(s.waiting), n(s.busy),
                        n(s.idle), std::string("0"), std::string("0"), n(s.connecting),
                        n(s.wait_time.max_us / 1'000'000), n(s.wait_time.max_us % 1'000'000),
                        std::string(mode_name(p->mode))});
      }
      table(out,
            {"database", "user", "cl_active", "cl_waiting", "sv_active", "sv_idle", "sv_used",
             "sv_tested", "sv_login", "maxwait", "maxwait_us", "pool_mode"},
            rows, "SHOW");
      return;
    }
    if (what == "STATS") {
      std::vector<Row> rows;
      for (const auto& p : d.pools()) {
        const PoolStats s = p->pool->stats();
        rows.push_back({p->database, p->user, n(s.acquires), n(s.hits), n(s.misses), n(s.waits),
                        n(s.timeouts), n(s.creates), n(s.create_failures), n(s.drops),
                        n(s.wait_time.p50_us), n(s.wait_time.p99_us), n(s.hold_time.p50_us),
                        n(s.hold_time.p99_us)});
      }
      table(
          out,
          {"database", "user", "acquires", "hits", "misses", "waits", "timeouts", "creates",
           "create_failures", "drops", "wait_p50_us", "wait_p99_us", "hold_p50_us", "hold_p99_us"},
          rows, "SHOW");
      return;
    }
    if (what == "CLIENTS" || what == "SERVERS") {
      const bool servers = what == "SERVERS";
      std::vector<Row> rows;
      for (const ClientInfo& c : d.clients_now()) {
        if (servers && !c.attached) continue;
        if (servers) {
          rows.push_back({std::string("S"), c.user, c.database, std::string("active"), c.host,
                          n(c.port), n(static_cast<std::uint32_t>(c.server_key.pid)), c.cclass});
        } else {
          rows.push_back({std::string("C"), c.user, c.database,
                          std::string(c.attached ? "active" : "idle"), c.addr, n(c.client_port),
                          timestamp(c.connect_time), c.cclass});
        }
      }
      if (servers)
        table(out, {"type", "user", "database", "state", "addr", "port", "remote_pid", "cclass"},
              rows, "SHOW");
      else
        table(out, {"type", "user", "database", "state", "addr", "port", "connect_time", "cclass"},
              rows, "SHOW");
      return;
    }
    if (what == "DATABASES") {
      std::vector<Row> rows;
      const auto pools = d.pools();
      for (const auto& [name, db] : cfg->databases) {
        std::uint64_t current = 0;
        for (const auto& p : pools)
          if (p->database == name) current += p->pool->opened();
        rows.push_back({name, db.host, n(db.port), db.dbname.empty() ? name : db.dbname,
                        db.user ? std::optional<std::string>(*db.user) : std::nullopt,
                        n(db.pool_size.value_or(cfg->default_pool_size)),
                        n(db.min_pool_size.value_or(cfg->min_pool_size)),
                        std::string(mode_name(db.pool_mode.value_or(cfg->pool_mode))), n(current)});
      }
      table(out,
            {"name", "host", "port", "database", "force_user", "pool_size", "min_pool_size",
             "pool_mode", "current_connections"},
            rows, "SHOW");
      return;
    }
    if (what == "CCLASS") {
      std::vector<Row> rows;
      for (const auto& p : d.pools()) {
        const PoolStats s = p->pool->stats();
        for (const auto& [name, c] : s.classes)
          rows.push_back(
              {p->database, p->user, name, n(c.requests), n(c.hits), n(c.misses), n(c.waits)});
      }
      table(out,
            {"database", "user", "cclass", "num_requests", "num_hits", "num_misses", "num_waits"},
            rows, "SHOW");
      return;
    }
    if (what == "CONFIG") {
      const std::vector<std::pair<std::string, std::string>> items = {
          {"listen_addr", cfg->listen_addr},
          {"listen_port", n(cfg->listen_port)},
          {"unix_socket_dir", cfg->unix_socket_dir},
          {"auth_type", auth_name(cfg->auth_type)},
          {"auth_file", cfg->auth_file},
          {"pool_mode", mode_name(cfg->pool_mode)},
          {"default_pool_size", n(cfg->default_pool_size)},
          {"min_pool_size", n(cfg->min_pool_size)},
          {"reserve_pool_size", n(cfg->reserve_pool_size)},
          {"max_client_conn", n(cfg->max_client_conn)},
          {"max_db_connections", n(cfg->max_db_connections)},
          {"server_reset_query", cfg->server_reset_query},
          {"server_check_query", cfg->server_check_query},
          {"server_check_delay", seconds(cfg->server_check_delay)},
          {"server_lifetime", seconds(cfg->server_lifetime)},
          {"server_idle_timeout", seconds(cfg->server_idle_timeout)},
          {"server_connect_timeout", seconds(cfg->server_connect_timeout)},
          {"query_wait_timeout", seconds(cfg->query_wait_timeout)},
          {"client_idle_timeout", seconds(cfg->client_idle_timeout)},
          {"idle_transaction_timeout", seconds(cfg->idle_transaction_timeout)},
          {"logfile", cfg->logfile},
          {"pidfile", cfg->pidfile},
          {"log_level", cfg->log_level},
          {"workers", n(cfg->workers)},
      };
      std::vector<Row> rows;
      const bool restart_only[] = {true, true, true};  // listen_addr, listen_port, unix_socket_dir
      for (std::size_t i = 0; i < items.size(); ++i)
        rows.push_back({items[i].first, items[i].second,
                        std::string(i < 3 && restart_only[i] ? "no" : "yes")});
      table(out, {"key", "value", "changeable"}, rows, "SHOW");
      return;
    }
    pg::put_error_response(out, "ERROR", "42601", "unknown SHOW: " + words[1]);
    return;
  }
  if (words.size() == 1 && (words[0] == "PAUSE" || words[0] == "RESUME" || words[0] == "RELOAD" ||
                            words[0] == "SHUTDOWN")) {
    if (!may_control) {
      pg::put_error_response(out, "ERROR", "42501", "admin access needed");
      return;
    }
    if (words[0] == "PAUSE") d.pause(true);
    if (words[0] == "RESUME") d.pause(false);
    if (words[0] == "RELOAD" && !d.reload()) {
      pg::put_error_response(out, "ERROR", "F0000", "reload failed; see the log");
      return;
    }
    if (words[0] == "SHUTDOWN") d.shutdown();
    pg::put_command_complete(out, words[0]);
    return;
  }
  pg::put_error_response(out, "ERROR", "42601",
                         "unknown command; SHOW POOLS|STATS|CLIENTS|SERVERS|CONFIG|DATABASES|"
                         "CCLASS|VERSION, PAUSE, RESUME, RELOAD, SHUTDOWN");
}

}  // namespace reservoir::server
