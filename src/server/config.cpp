// src/server/config.cpp: reservoird's INI parser (PgBouncer's format: the main section, the
// [databases] connection strings) and the auth_file (userlist.txt) parser.
//
// The INI syntax follows PgBouncer's: "key = value" lines; ';' or '#' start a comment only at the
// start of a line (a value runs to the end of its line, so "pass;word" stays whole); blank lines
// and surrounding whitespace are ignored; setting and section names are case-insensitive. A main
// setting's value may be wrapped in single or double quotes (a doubled quote inside is one
// quote). A setting given twice keeps the last value, as in PgBouncer; a database given twice is
// an error. [databases] values are PgBouncer connection strings: key=value pairs separated by
// spaces, a value single-quoted when it holds spaces ('' inside is a quote).
#include "server/config.hpp"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <limits>
#include <string_view>
#include <thread>

namespace reservoir::server {
namespace {

constexpr std::string_view kSpace = " \t\r\n\f\v";

std::string_view trim(std::string_view s) {
  const std::size_t b = s.find_first_not_of(kSpace);
  if (b == std::string_view::npos) return {};
  const std::size_t e = s.find_last_not_of(kSpace);
  return s.substr(b, e - b + 1);
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

std::string read_file(const std::string& path, std::string_view what) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) {
    throw ConfigError(path + ": cannot read " + std::string(what) + ": " + std::strerror(errno));
  }
  std::string text;
  char buf[8192];
  std::size_t n = 0;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  const bool failed = std::ferror(f) != 0;
  const int err = errno;
  std::fclose(f);
  if (failed) {
    throw ConfigError(path + ": cannot read " + std::string(what) + ": " + std::strerror(err));
  }
  return text;
}

// Where an error is: "path:line: ".
struct Where {
  const std::string& path;
  std::size_t line;

  [[noreturn]] void fail(const std::string& message) const {
    throw ConfigError(path + ":" + std::to_string(line) + ": " + message);
  }
};

// Calls f(line_number, line) for each line, '\r' of CRLF endings removed.
void for_each_line(const std::string& text,
                   const std::function<void(std::size_t, std::string_view)>& f) {
  std::size_t pos = 0;
  std::size_t number = 0;
  while (pos <= text.size()) {
    const std::size_t nl = text.find('\n', pos);
    std::string_view line(text.data() + pos, (nl == std::string::npos ? text.size() : nl) - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    f(++number, line);
    if (nl == std::string::npos) break;
    pos = nl + 1;
  }
}

std::optional<std::uint64_t> parse_digits(std::string_view s) {
  if (s.empty()) return std::nullopt;
  std::uint64_t v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

std::uint32_t parse_count(const Where& at, std::string_view name, std::string_view value,
                          std::uint64_t min = 0,
                          std::uint64_t max = std::numeric_limits<std::uint32_t>::max()) {
  const auto v = parse_digits(value);
  if (!v) at.fail(std::string(name) + ": not a number: '" + std::string(value) + "'");
  if (*v < min || *v > max) {
    at.fail(std::string(name) + ": out of range (" + std::to_string(min) + " to " +
            std::to_string(max) + "): '" + std::string(value) + "'");
  }
  return static_cast<std::uint32_t>(*v);
}

std::uint16_t parse_port(const Where& at, std::string_view name, std::string_view value) {
  return static_cast<std::uint16_t>(parse_count(at, name, value, 1, 65535));
}

// PgBouncer's times: a plain number is seconds; units us, ms, s, min, h, d; a fraction is
// allowed ("0.5", "1.5min"). Rounded to milliseconds, a positive time to at least 1 ms (0 means
// "off" for several settings, so a tiny time must not become 0).
std::chrono::milliseconds parse_time(const Where& at, std::string_view name,
                                     std::string_view value) {
  const auto bad = [&](const char* why) {
    at.fail(std::string(name) + ": " + why + ": '" + std::string(value) + "'");
  };
  std::size_t i = 0;
  while (i < value.size() && ((value[i] >= '0' && value[i] <= '9') || value[i] == '.')) ++i;
  const std::string_view number = value.substr(0, i);
  const std::string unit = lower(trim(value.substr(i)));
  if (number.empty() || number.front() == '.' || number.back() == '.' ||
      number.find('.') != number.rfind('.')) {
    bad("not a time");
  }
  double amount = 0;
  {
    const std::string copy(number);  // from_chars for double is missing from older libstdc++
    char* end = nullptr;
    amount = std::strtod(copy.c_str(), &end);
    if (end != copy.c_str() + copy.size()) bad("not a time");
  }
  double ms_per_unit = 0;
  if (unit.empty() || unit == "s") {
    ms_per_unit = 1e3;
  } else if (unit == "us") {
    ms_per_unit = 1e-3;
  } else if (unit == "ms") {
    ms_per_unit = 1;
  } else if (unit == "min") {
    ms_per_unit = 60e3;
  } else if (unit == "h") {
    ms_per_unit = 3600e3;
  } else if (unit == "d") {
    ms_per_unit = 86400e3;
  } else {
    bad("unknown time unit (us, ms, s, min, h, d)");
  }
  const double ms = amount * ms_per_unit;
  // Bounded well inside what a steady_clock time_point can add without overflow.
  if (!(ms <= 1e13)) bad("out of range");
  std::int64_t rounded = std::llround(ms);
  if (rounded == 0 && ms > 0) rounded = 1;
  return std::chrono::milliseconds(rounded);
}

std::optional<PoolMode> pool_mode_from(std::string_view s) {
  const std::string v = lower(s);
  if (v == "session") return PoolMode::session;
  if (v == "transaction") return PoolMode::transaction;
  if (v == "statement") return PoolMode::statement;
  return std::nullopt;
}

PoolMode parse_pool_mode(const Where& at, std::string_view name, std::string_view value) {
  const auto mode = pool_mode_from(value);
  if (!mode) {
    at.fail(std::string(name) + ": not a pool mode (session, transaction, statement): '" +
            std::string(value) + "'");
  }
  return *mode;
}

std::vector<std::string> parse_list(std::string_view value) {
  std::vector<std::string> out;
  std::size_t pos = 0;
  while (pos <= value.size()) {
    const std::size_t comma = value.find(',', pos);
    const std::string_view item = trim(
        value.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos));
    if (!item.empty()) out.emplace_back(item);
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return out;
}

// A main-section value: as written, or the inside of matching quotes ('' or "" inside is one).
std::string unquote_setting(const Where& at, std::string_view name, std::string_view value) {
  if (value.empty() || (value.front() != '\'' && value.front() != '"')) return std::string(value);
  const char q = value.front();
  std::string out;
  std::size_t i = 1;
  while (true) {
    if (i >= value.size()) at.fail(std::string(name) + ": unterminated quote");
    if (value[i] == q) {
      if (i + 1 < value.size() && value[i + 1] == q) {
        out += q;
        i += 2;
        continue;
      }
      break;
    }
    out += value[i++];
  }
  if (i + 1 != value.size()) at.fail(std::string(name) + ": text after the closing quote");
  return out;
}

void set_main(Config& c, const Where& at, const std::string& name, std::string_view raw) {
  const std::string value = unquote_setting(at, name, raw);
  const auto time = [&](std::chrono::milliseconds& field) { field = parse_time(at, name, value); };
  const auto count = [&](std::uint32_t& field) { field = parse_count(at, name, value); };
  if (name == "listen_addr") {
    c.listen_addr = value;
  } else if (name == "listen_port") {
    c.listen_port = parse_port(at, name, value);
  } else if (name == "unix_socket_dir") {
    c.unix_socket_dir = value;
  } else if (name == "auth_type") {
    const std::string v = lower(value);
    if (v == "scram-sha-256") {
      c.auth_type = AuthType::scram_sha_256;
    } else if (v == "md5") {
      c.auth_type = AuthType::md5;
    } else if (v == "plain") {
      c.auth_type = AuthType::plain;
    } else if (v == "trust") {
      c.auth_type = AuthType::trust;
    } else {
      at.fail(name + ": not an auth type (scram-sha-256, md5, plain, trust): '" + value + "'");
    }
  } else if (name == "auth_file") {
    c.auth_file = value;
  } else if (name == "pool_mode") {
    c.pool_mode = parse_pool_mode(at, name, value);
  } else if (name == "default_pool_size") {
    count(c.default_pool_size);
  } else if (name == "min_pool_size") {
    count(c.min_pool_size);
  } else if (name == "reserve_pool_size") {
    count(c.reserve_pool_size);
  } else if (name == "reserve_pool_timeout") {
    time(c.reserve_pool_timeout);
  } else if (name == "max_client_conn") {
    count(c.max_client_conn);
  } else if (name == "max_db_connections") {
    count(c.max_db_connections);
  } else if (name == "server_reset_query") {
    c.server_reset_query = value;
  } else if (name == "server_check_query") {
    c.server_check_query = value;
  } else if (name == "server_check_delay") {
    time(c.server_check_delay);
  } else if (name == "server_lifetime") {
    time(c.server_lifetime);
  } else if (name == "server_idle_timeout") {
    time(c.server_idle_timeout);
  } else if (name == "server_connect_timeout") {
    time(c.server_connect_timeout);
  } else if (name == "query_wait_timeout") {
    time(c.query_wait_timeout);
  } else if (name == "client_idle_timeout") {
    time(c.client_idle_timeout);
  } else if (name == "idle_transaction_timeout") {
    time(c.idle_transaction_timeout);
  } else if (name == "admin_users") {
    c.admin_users = parse_list(value);
  } else if (name == "stats_users") {
    c.stats_users = parse_list(value);
  } else if (name == "logfile") {
    c.logfile = value;
  } else if (name == "pidfile") {
    c.pidfile = value;
  } else if (name == "log_level") {
    const std::string v = lower(value);
    if (v != "error" && v != "warning" && v != "info" && v != "debug") {
      at.fail(name + ": not a log level (error, warning, info, debug): '" + value + "'");
    }
    c.log_level = v;
  } else if (name == "workers") {
    c.workers = parse_count(at, name, value, 0, 1024);
  } else {
    at.fail("unknown setting '" + name + "'");
  }
}

// One [databases] connection string: key=value pairs, whitespace between pairs and around '='.
DatabaseEntry parse_database(const Where& at, const std::string& name, std::string_view text) {
  DatabaseEntry e;
  e.name = name;
  const std::string prefix = "database '" + name + "': ";
  std::vector<std::string> seen;
  std::size_t i = 0;
  const auto skip_space = [&] {
    while (i < text.size() && kSpace.find(text[i]) != std::string_view::npos) ++i;
  };
  while (true) {
    skip_space();
    if (i >= text.size()) break;
    const std::size_t key_begin = i;
    while (i < text.size() &&
           ((text[i] >= 'a' && text[i] <= 'z') || (text[i] >= 'A' && text[i] <= 'Z') ||
            (text[i] >= '0' && text[i] <= '9') || text[i] == '_')) {
      ++i;
    }
    const std::string key = lower(text.substr(key_begin, i - key_begin));
    if (key.empty())
      at.fail(prefix + "expected key=value at '" + std::string(text.substr(i)) + "'");
    skip_space();
    if (i >= text.size() || text[i] != '=') at.fail(prefix + "expected '=' after '" + key + "'");
    ++i;
    skip_space();
    std::string value;
    if (i < text.size() && text[i] == '\'') {
      ++i;
      while (true) {
        if (i >= text.size()) at.fail(prefix + key + ": unterminated quote");
        if (text[i] == '\'') {
          if (i + 1 < text.size() && text[i + 1] == '\'') {
            value += '\'';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        value += text[i++];
      }
      if (i < text.size() && kSpace.find(text[i]) == std::string_view::npos) {
        at.fail(prefix + key + ": text after the closing quote");
      }
    } else {
      const std::size_t b = i;
      while (i < text.size() && kSpace.find(text[i]) == std::string_view::npos) ++i;
      value = std::string(text.substr(b, i - b));
    }
    for (const std::string& k : seen) {
      if (k == key) at.fail(prefix + "'" + key + "' given twice");
    }
    seen.push_back(key);
    const std::string setting = prefix + key;
    const auto non_empty = [&] {
      if (value.empty()) at.fail(setting + ": empty value");
    };
    if (key == "host") {
      non_empty();
      e.host = value;
    } else if (key == "port") {
      e.port = parse_port(at, setting, value);
    } else if (key == "dbname") {
      non_empty();
      e.dbname = value;
    } else if (key == "user") {
      non_empty();
      e.user = value;
    } else if (key == "password") {
      e.password = value;
    } else if (key == "pool_size") {
      e.pool_size = parse_count(at, setting, value);
    } else if (key == "min_pool_size") {
      e.min_pool_size = parse_count(at, setting, value);
    } else if (key == "reserve_pool") {
      e.reserve_pool = parse_count(at, setting, value);
    } else if (key == "pool_mode") {
      e.pool_mode = parse_pool_mode(at, setting, value);
    } else if (key == "max_db_connections") {
      e.max_db_connections = parse_count(at, setting, value);
    } else {
      at.fail(prefix + "unknown parameter '" + key + "'");
    }
  }
  if (e.password && !e.user) at.fail(prefix + "password without user");
  return e;
}

}  // namespace

Config parse_config(const std::string& text, const std::string& path) {
  Config c;
  c.path = path;
  enum class Section : std::uint8_t { none, main, databases } section = Section::none;
  bool saw_main = false;
  for_each_line(text, [&](std::size_t number, std::string_view raw) {
    const Where at{path, number};
    const std::string_view line = trim(raw);
    if (line.empty() || line.front() == ';' || line.front() == '#') return;
    if (line.front() == '[') {
      if (line.back() != ']') at.fail("malformed section header '" + std::string(line) + "'");
      const std::string name = lower(trim(line.substr(1, line.size() - 2)));
      if (name == "reservoird" || name == "pgbouncer") {
        section = Section::main;
        saw_main = true;
      } else if (name == "databases") {
        section = Section::databases;
      } else {
        at.fail("unknown section '[" + name + "]' (expected [reservoird], [pgbouncer] or " +
                "[databases])");
      }
      return;
    }
    // key: up to '=' (a database name may be double-quoted, as PgBouncer allows).
    std::string key;
    std::string_view rest;
    if (line.front() == '"') {
      const std::size_t close = line.find('"', 1);
      if (close == std::string_view::npos) at.fail("unterminated quote in the name");
      key = std::string(line.substr(1, close - 1));
      rest = trim(line.substr(close + 1));
      if (rest.empty() || rest.front() != '=') at.fail("expected '=' after '" + key + "'");
    } else {
      const std::size_t eq = line.find('=');
      if (eq == std::string_view::npos)
        at.fail("expected 'key = value': '" + std::string(line) + "'");
      key = std::string(trim(line.substr(0, eq)));
      rest = line.substr(eq);
    }
    const std::string_view value = trim(rest.substr(1));
    if (key.empty()) at.fail("missing name before '='");
    switch (section) {
      case Section::none:
        at.fail("'" + key + "' outside a section");
      case Section::main:
        set_main(c, at, lower(key), value);
        break;
      case Section::databases:
        if (c.databases.count(key) != 0) at.fail("database '" + key + "' defined twice");
        c.databases.emplace(key, parse_database(at, key, value));
        break;
    }
  });
  if (!saw_main) throw ConfigError(path + ": no [reservoird] or [pgbouncer] section");
  return c;
}

Config load_config(const std::string& path) {
  return parse_config(read_file(path, "the configuration"), path);
}

std::uint32_t worker_count(const Config& config) {
  if (config.workers != 0) return config.workers;
  const unsigned cores = std::thread::hardware_concurrency();
  return cores == 0 ? 1 : cores;
}

std::map<std::string, Secret> parse_auth_file(const std::string& text, const std::string& path) {
  std::map<std::string, Secret> users;
  for_each_line(text, [&](std::size_t number, std::string_view raw) {
    const Where at{path, number};
    const std::string_view line = trim(raw);
    if (line.empty() || line.front() == ';' || line.front() == '#') return;
    std::size_t i = 0;
    // One "..." token; "" inside is a quote.
    const auto token = [&](const char* what) {
      if (i >= line.size() || line[i] != '"') at.fail(std::string("expected a quoted ") + what);
      ++i;
      std::string out;
      while (true) {
        if (i >= line.size()) at.fail(std::string("unterminated quote in the ") + what);
        if (line[i] == '"') {
          if (i + 1 < line.size() && line[i + 1] == '"') {
            out += '"';
            i += 2;
            continue;
          }
          ++i;
          break;
        }
        out += line[i++];
      }
      return out;
    };
    std::string user = token("user name");
    if (i < line.size() && kSpace.find(line[i]) == std::string_view::npos) {
      at.fail("expected whitespace after the user name");
    }
    while (i < line.size() && kSpace.find(line[i]) != std::string_view::npos) ++i;
    std::string secret = token("password");
    if (!trim(line.substr(i)).empty()) at.fail("unexpected text after the password");
    if (user.empty()) at.fail("empty user name");
    if (users.count(user) != 0) at.fail("user '" + user + "' listed twice");
    try {
      users.emplace(std::move(user), Secret::parse(secret));
    } catch (const AuthError& e) {
      at.fail(e.what());  // never the secret itself
    }
  });
  return users;
}

std::map<std::string, Secret> load_auth_file(const std::string& path) {
  return parse_auth_file(read_file(path, "the auth_file"), path);
}

}  // namespace reservoir::server
