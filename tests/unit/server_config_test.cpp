// tests/unit/server_config_test.cpp: reservoird's configuration: the INI file in PgBouncer's
// format ([reservoird] / [pgbouncer], [databases]) and the auth_file, with their errors.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <string>

#include "server/config.hpp"

namespace reservoir::server {
namespace {

using std::chrono::milliseconds;

constexpr const char* kFullSample = R"ini(
;; reservoird sample: every setting
# a hash comment too

[reservoird]
listen_addr = 0.0.0.0
listen_port = 6543
unix_socket_dir = /tmp
auth_type = md5
auth_file = /etc/reservoird/userlist.txt
pool_mode = transaction
default_pool_size = 25
min_pool_size = 2
reserve_pool_size = 5
reserve_pool_timeout = 3
max_client_conn = 1000
max_db_connections = 50
server_reset_query = DISCARD ALL; SELECT 1
server_check_query = "select 2"
server_check_delay = 10s
server_lifetime = 1h
server_idle_timeout = 2min
server_connect_timeout = 500ms
query_wait_timeout = 0.5
client_idle_timeout = 1d
idle_transaction_timeout = 1500us
admin_users = admin, root ,ops
stats_users = monitor
logfile = /var/log/reservoird.log
pidfile = /run/reservoird.pid
log_level = debug
workers = 4

[databases]
shop = host=db1 port=5433 dbname=shop_prod user=app password='it''s secret' pool_size=10 min_pool_size=1 reserve_pool=2 pool_mode=statement max_db_connections=30
plain =
quoted = host = '/var/run/postgresql'   dbname='my db'
* = host=fallback
)ini";

TEST(Config, FullSample) {
  const Config c = parse_config(kFullSample, "sample.ini");
  EXPECT_EQ(c.path, "sample.ini");
  EXPECT_EQ(c.listen_addr, "0.0.0.0");
  EXPECT_EQ(c.listen_port, 6543);
  EXPECT_EQ(c.unix_socket_dir, "/tmp");
  EXPECT_EQ(c.auth_type, AuthType::md5);
  EXPECT_EQ(c.auth_file, "/etc/reservoird/userlist.txt");
  EXPECT_EQ(c.pool_mode, PoolMode::transaction);
  EXPECT_EQ(c.default_pool_size, 25u);
  EXPECT_EQ(c.min_pool_size, 2u);
  EXPECT_EQ(c.reserve_pool_size, 5u);
  EXPECT_EQ(c.reserve_pool_timeout, milliseconds(3'000));
  EXPECT_EQ(c.max_client_conn, 1000u);
  EXPECT_EQ(c.max_db_connections, 50u);
  EXPECT_EQ(c.server_reset_query, "DISCARD ALL; SELECT 1");  // ';' inside a value stays
  EXPECT_EQ(c.server_check_query, "select 2");
  EXPECT_EQ(c.server_check_delay, milliseconds(10'000));
  EXPECT_EQ(c.server_lifetime, milliseconds(3'600'000));
  EXPECT_EQ(c.server_idle_timeout, milliseconds(120'000));
  EXPECT_EQ(c.server_connect_timeout, milliseconds(500));
  EXPECT_EQ(c.query_wait_timeout, milliseconds(500));
  EXPECT_EQ(c.client_idle_timeout, milliseconds(86'400'000));
  EXPECT_EQ(c.idle_transaction_timeout, milliseconds(2));
  EXPECT_EQ(c.admin_users, (std::vector<std::string>{"admin", "root", "ops"}));
  EXPECT_EQ(c.stats_users, (std::vector<std::string>{"monitor"}));
  EXPECT_EQ(c.logfile, "/var/log/reservoird.log");
  EXPECT_EQ(c.pidfile, "/run/reservoird.pid");
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.workers, 4u);
  EXPECT_EQ(worker_count(c), 4u);

  ASSERT_EQ(c.databases.size(), 4u);
  const DatabaseEntry& shop = c.databases.at("shop");
  EXPECT_EQ(shop.name, "shop");
  EXPECT_EQ(shop.host, "db1");
  EXPECT_EQ(shop.port, 5433);
  EXPECT_EQ(shop.dbname, "shop_prod");
  EXPECT_EQ(shop.user, "app");
  EXPECT_EQ(shop.password, "it's secret");
  EXPECT_EQ(shop.pool_size, 10u);
  EXPECT_EQ(shop.min_pool_size, 1u);
  EXPECT_EQ(shop.reserve_pool, 2u);
  EXPECT_EQ(shop.pool_mode, PoolMode::statement);
  EXPECT_EQ(shop.max_db_connections, 30u);

  const DatabaseEntry& plain = c.databases.at("plain");
  EXPECT_EQ(plain.host, "127.0.0.1");
  EXPECT_EQ(plain.port, 5432);
  EXPECT_EQ(plain.dbname, "");
  EXPECT_FALSE(plain.user);
  EXPECT_FALSE(plain.password);
  EXPECT_FALSE(plain.pool_size);
  EXPECT_FALSE(plain.min_pool_size);
  EXPECT_FALSE(plain.reserve_pool);
  EXPECT_FALSE(plain.pool_mode);
  EXPECT_FALSE(plain.max_db_connections);

  const DatabaseEntry& quoted = c.databases.at("quoted");
  EXPECT_EQ(quoted.host, "/var/run/postgresql");
  EXPECT_EQ(quoted.dbname, "my db");
  EXPECT_EQ(c.databases.at("*").host, "fallback");
}

TEST(Config, PgBouncerHeaderDefaultsAndCase) {
  const Config c = parse_config(
      "[PgBouncer]\r\n"
      "  LISTEN_PORT=7000  \r\n"
      "auth_type = SCRAM-SHA-256\n"
      "pool_mode=Session\n"
      "admin_users =\n"
      "workers = 0\n",
      "p.ini");
  EXPECT_EQ(c.listen_port, 7000);
  EXPECT_EQ(c.auth_type, AuthType::scram_sha_256);
  EXPECT_EQ(c.pool_mode, PoolMode::session);
  EXPECT_TRUE(c.admin_users.empty());
  EXPECT_EQ(c.workers, 0u);
  EXPECT_GE(worker_count(c), 1u);
  // Defaults untouched.
  const Config d;
  EXPECT_EQ(c.listen_addr, d.listen_addr);
  EXPECT_EQ(c.default_pool_size, d.default_pool_size);
  EXPECT_EQ(c.server_lifetime, d.server_lifetime);
  EXPECT_EQ(c.server_reset_query, "DISCARD ALL");
  EXPECT_TRUE(c.databases.empty());
}

TEST(Config, EveryAuthTypePoolModeAndLogLevel) {
  const auto auth = [](const std::string& v) {
    return parse_config("[reservoird]\nauth_type = " + v + "\n", "a.ini").auth_type;
  };
  EXPECT_EQ(auth("scram-sha-256"), AuthType::scram_sha_256);
  EXPECT_EQ(auth("md5"), AuthType::md5);
  EXPECT_EQ(auth("plain"), AuthType::plain);
  EXPECT_EQ(auth("trust"), AuthType::trust);
  const auto mode = [](const std::string& v) {
    return parse_config("[reservoird]\npool_mode = " + v + "\n", "a.ini").pool_mode;
  };
  EXPECT_EQ(mode("session"), PoolMode::session);
  EXPECT_EQ(mode("transaction"), PoolMode::transaction);
  EXPECT_EQ(mode("statement"), PoolMode::statement);
  for (const char* level : {"error", "warning", "info", "debug"}) {
    EXPECT_EQ(parse_config(std::string("[reservoird]\nlog_level=") + level, "a.ini").log_level,
              level);
  }
}

TEST(Config, Times) {
  const auto t = [](const std::string& v) {
    return parse_config("[reservoird]\nserver_lifetime = " + v + "\n", "t.ini").server_lifetime;
  };
  EXPECT_EQ(t("0"), milliseconds(0));
  EXPECT_EQ(t("30"), milliseconds(30'000));
  EXPECT_EQ(t("1.5"), milliseconds(1'500));
  EXPECT_EQ(t("250ms"), milliseconds(250));
  EXPECT_EQ(t("5s"), milliseconds(5'000));
  EXPECT_EQ(t("5 s"), milliseconds(5'000));
  EXPECT_EQ(t("2min"), milliseconds(120'000));
  EXPECT_EQ(t("1h"), milliseconds(3'600'000));
  EXPECT_EQ(t("2d"), milliseconds(172'800'000));
  EXPECT_EQ(t("3000us"), milliseconds(3));
  EXPECT_EQ(t("1us"), milliseconds(1));  // never rounded down to "off"
}

TEST(Config, LastSettingWins) {
  const Config c = parse_config("[reservoird]\nlisten_port=1\nlisten_port=2\n", "l.ini");
  EXPECT_EQ(c.listen_port, 2);
}

// The message of the ConfigError that parse_config throws, or "" if none.
std::string error_of(const std::string& text, const std::string& path = "r.ini") {
  try {
    parse_config(text, path);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(ConfigErrors, NameTheFileAndTheLine) {
  EXPECT_EQ(error_of("[reservoird]\n\n; c\nbogus = 1\n"), "r.ini:4: unknown setting 'bogus'");
  EXPECT_EQ(error_of("[reservoird]\ndefault_pool_size = ten\n"),
            "r.ini:2: default_pool_size: not a number: 'ten'");
  EXPECT_EQ(error_of("[reservoird]\ndefault_pool_size = -1\n"),
            "r.ini:2: default_pool_size: not a number: '-1'");
  EXPECT_EQ(error_of("[reservoird]\nmax_client_conn = 99999999999\n"),
            "r.ini:2: max_client_conn: out of range (0 to 4294967295): '99999999999'");
  EXPECT_EQ(error_of("[reservoird]\nlisten_port = 0\n"),
            "r.ini:2: listen_port: out of range (1 to 65535): '0'");
  EXPECT_EQ(error_of("[reservoird]\nlisten_port = 65536\n"),
            "r.ini:2: listen_port: out of range (1 to 65535): '65536'");
  EXPECT_EQ(error_of("[reservoird]\nworkers = 5000\n"),
            "r.ini:2: workers: out of range (0 to 1024): '5000'");
  EXPECT_EQ(error_of("[reservoird]\nauth_type = hba\n"),
            "r.ini:2: auth_type: not an auth type (scram-sha-256, md5, plain, trust): 'hba'");
  EXPECT_EQ(error_of("[reservoird]\npool_mode = pooled\n"),
            "r.ini:2: pool_mode: not a pool mode (session, transaction, statement): 'pooled'");
  EXPECT_EQ(error_of("[reservoird]\nlog_level = loud\n"),
            "r.ini:2: log_level: not a log level (error, warning, info, debug): 'loud'");
  EXPECT_EQ(error_of("[reservoird]\nserver_lifetime = 5 weeks\n"),
            "r.ini:2: server_lifetime: unknown time unit (us, ms, s, min, h, d): '5 weeks'");
  EXPECT_EQ(error_of("[reservoird]\nquery_wait_timeout = soon\n"),
            "r.ini:2: query_wait_timeout: not a time: 'soon'");
  EXPECT_EQ(error_of("[reservoird]\nquery_wait_timeout = 1.2.3\n"),
            "r.ini:2: query_wait_timeout: not a time: '1.2.3'");
  EXPECT_EQ(error_of("[reservoird]\nquery_wait_timeout =\n"),
            "r.ini:2: query_wait_timeout: not a time: ''");
  EXPECT_EQ(error_of("[reservoird]\nserver_lifetime = 999999999999d\n"),
            "r.ini:2: server_lifetime: out of range: '999999999999d'");
  EXPECT_EQ(error_of("[reservoird]\nlogfile = \"/var/log\n"),
            "r.ini:2: logfile: unterminated quote");
  EXPECT_EQ(error_of("[reservoird]\nlogfile = 'a'b\n"),
            "r.ini:2: logfile: text after the closing quote");
  EXPECT_EQ(error_of("[reservoird]\njust words\n"),
            "r.ini:2: expected 'key = value': 'just words'");
  EXPECT_EQ(error_of("[reservoird]\n= 5\n"), "r.ini:2: missing name before '='");
  EXPECT_EQ(error_of("listen_port = 5\n[reservoird]\n"),
            "r.ini:1: 'listen_port' outside a section");
  EXPECT_EQ(error_of("[reservoird]\n[users]\n"),
            "r.ini:2: unknown section '[users]' (expected [reservoird], [pgbouncer] or "
            "[databases])");
  EXPECT_EQ(error_of("[reservoird\n"), "r.ini:1: malformed section header '[reservoird'");
  EXPECT_EQ(error_of("[databases]\na =\n"), "r.ini: no [reservoird] or [pgbouncer] section");
  EXPECT_EQ(error_of("", "/etc/x.ini"), "/etc/x.ini: no [reservoird] or [pgbouncer] section");
}

TEST(ConfigErrors, Databases) {
  const std::string head = "[pgbouncer]\n[databases]\n";
  EXPECT_EQ(error_of(head + "a = host=x connect_query='select 1'\n"),
            "r.ini:3: database 'a': unknown parameter 'connect_query'");
  EXPECT_EQ(error_of(head + "a = host=x port=abc\n"),
            "r.ini:3: database 'a': port: not a number: 'abc'");
  EXPECT_EQ(error_of(head + "a = port=70000\n"),
            "r.ini:3: database 'a': port: out of range (1 to 65535): '70000'");
  EXPECT_EQ(error_of(head + "a = pool_size=many\n"),
            "r.ini:3: database 'a': pool_size: not a number: 'many'");
  EXPECT_EQ(error_of(head + "a = min_pool_size=x\n"),
            "r.ini:3: database 'a': min_pool_size: not a number: 'x'");
  EXPECT_EQ(error_of(head + "a = reserve_pool=x\n"),
            "r.ini:3: database 'a': reserve_pool: not a number: 'x'");
  EXPECT_EQ(error_of(head + "a = max_db_connections=x\n"),
            "r.ini:3: database 'a': max_db_connections: not a number: 'x'");
  EXPECT_EQ(error_of(head + "a = pool_mode=sometimes\n"),
            "r.ini:3: database 'a': pool_mode: not a pool mode (session, transaction, statement): "
            "'sometimes'");
  EXPECT_EQ(error_of(head + "a = dbname='unterminated\n"),
            "r.ini:3: database 'a': dbname: unterminated quote");
  EXPECT_EQ(error_of(head + "a = dbname='x'y\n"),
            "r.ini:3: database 'a': dbname: text after the closing quote");
  EXPECT_EQ(error_of(head + "a = host\n"), "r.ini:3: database 'a': expected '=' after 'host'");
  EXPECT_EQ(error_of(head + "a = host=x =y\n"),
            "r.ini:3: database 'a': expected key=value at '=y'");
  EXPECT_EQ(error_of(head + "a = host=x host=y\n"), "r.ini:3: database 'a': 'host' given twice");
  EXPECT_EQ(error_of(head + "a = host=''\n"), "r.ini:3: database 'a': host: empty value");
  EXPECT_EQ(error_of(head + "a = password=x\n"), "r.ini:3: database 'a': password without user");
  EXPECT_EQ(error_of(head + "a = host=x\n\na = host=y\n"), "r.ini:5: database 'a' defined twice");
}

TEST(Config, DatabaseQuoting) {
  const Config c = parse_config(
      "[reservoird]\n[databases]\n"
      "a = password='' user=u\n"
      "b = password='with '' quote and spaces' user = 'x y'\n"
      "\"my db\" = dbname=real\n",
      "q.ini");
  EXPECT_EQ(c.databases.at("a").password, "");
  EXPECT_EQ(c.databases.at("b").password, "with ' quote and spaces");
  EXPECT_EQ(c.databases.at("b").user, "x y");
  EXPECT_EQ(c.databases.at("my db").dbname, "real");
}

TEST(AuthFile, Parses) {
  const auto users = parse_auth_file(
      ";; comment\n"
      "# another\n"
      "\n"
      "\"alice\" \"wonder land\"\n"
      "  \"bob\"\t\"md553f48b7c4b76a86ce72276c5755f217d\"  \r\n"
      "\"car\"\"ol\" \"say \"\"hi\"\"\"\n"
      "\"pg\" \"SCRAM-SHA-256$4096:/zJg9c5OSYyZ4BL94NcEYQ==$GJUc0G+Z+9NeT/ZqOUHVdrxVbIEG85wtPuyPA"
      "X3qeY8=:cOnzSCka83FgqGhte5/VBqmFHvM2B7mjk8WAkQmkq4g=\"\n"
      "\"nopass\" \"\"\n",
      "userlist.txt");
  ASSERT_EQ(users.size(), 5u);
  EXPECT_EQ(users.at("alice").kind, Secret::Kind::plain);
  EXPECT_EQ(users.at("alice").text, "wonder land");
  EXPECT_EQ(users.at("bob").kind, Secret::Kind::md5);
  EXPECT_EQ(users.at("car\"ol").text, "say \"hi\"");
  EXPECT_EQ(users.at("pg").kind, Secret::Kind::scram);
  EXPECT_EQ(users.at("nopass").text, "");
}

std::string auth_error_of(const std::string& text) {
  try {
    parse_auth_file(text, "u.txt");
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "";
}

TEST(AuthFile, BadLines) {
  EXPECT_EQ(auth_error_of("alice \"pw\"\n"), "u.txt:1: expected a quoted user name");
  EXPECT_EQ(auth_error_of("\"a\" \"pw\"\n\"alice\" pw\n"), "u.txt:2: expected a quoted password");
  EXPECT_EQ(auth_error_of("\"alice\"\n"), "u.txt:1: expected a quoted password");
  EXPECT_EQ(auth_error_of("\"alice \"pw\"\n"), "u.txt:1: expected whitespace after the user name");
  EXPECT_EQ(auth_error_of("\"alice\" \"pw\n"), "u.txt:1: unterminated quote in the password");
  EXPECT_EQ(auth_error_of("\"alice\n"), "u.txt:1: unterminated quote in the user name");
  EXPECT_EQ(auth_error_of("\"alice\" \"pw\" extra\n"),
            "u.txt:1: unexpected text after the password");
  EXPECT_EQ(auth_error_of("\"\" \"pw\"\n"), "u.txt:1: empty user name");
  EXPECT_EQ(auth_error_of("\"a\" \"x\"\n\"a\" \"y\"\n"), "u.txt:2: user 'a' listed twice");
  // A malformed verifier: the line is named, the secret is not shown.
  EXPECT_EQ(auth_error_of("\"a\" \"SCRAM-SHA-256$4096:zz\"\n"),
            "u.txt:1: malformed SCRAM-SHA-256 verifier");
}

class ConfigFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/reservoir-config-test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    for (const std::string& f : files_) std::remove(f.c_str());
    rmdir(dir_.c_str());
  }
  std::string write(const std::string& name, const std::string& text) {
    const std::string path = dir_ + "/" + name;
    std::ofstream(path) << text;
    files_.push_back(path);
    return path;
  }
  std::string dir_;
  std::vector<std::string> files_;
};

TEST_F(ConfigFiles, LoadsFiles) {
  const std::string ini = write("r.ini", "[reservoird]\nlisten_port = 7001\n");
  const Config c = load_config(ini);
  EXPECT_EQ(c.path, ini);
  EXPECT_EQ(c.listen_port, 7001);
  const std::string users = write("u.txt", "\"a\" \"b\"\n");
  EXPECT_EQ(load_auth_file(users).at("a").text, "b");
  const std::string bad = write("bad.ini", "[reservoird]\nnope = 1\n");
  try {
    load_config(bad);
    FAIL() << "no ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()), bad + ":2: unknown setting 'nope'");
  }
}

TEST_F(ConfigFiles, UnreadableFilesNameThePath) {
  const std::string missing = dir_ + "/missing.ini";
  try {
    load_config(missing);
    FAIL() << "no ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(missing + ": cannot read", 0), 0u) << e.what();
  }
  try {
    load_auth_file(missing);
    FAIL() << "no ConfigError";
  } catch (const ConfigError& e) {
    EXPECT_EQ(std::string(e.what()).rfind(missing + ": cannot read", 0), 0u) << e.what();
  }
}

}  // namespace
}  // namespace reservoir::server
