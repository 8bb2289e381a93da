// tests/integration/pg_reservoird_test.cpp: reservoird (apps/reservoird) between libpq/psql
// clients and the fixture's PostgreSQL: pool modes, isolation, auth, extended-protocol errors,
// cancel, killed clients and servers, limits and timeouts. Each test starts its own reservoird on
// a free port and kills it at the end (also on failure).
#include <gtest/gtest.h>

#ifdef RESERVOIRD_BINARY

#include <arpa/inet.h>
#include <fcntl.h>
#include <libpq-fe.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "reservoir/error.hpp"
#include "reservoir/pool.hpp"
#include "server/auth.hpp"
#include "server/pg_codec.hpp"
#include "support/postgres_fixture.hpp"
#include "support/test_util.hpp"

namespace reservoir {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
namespace pg = server::pg;

// A loopback port nothing listens on, for reservoird to listen on.
std::uint16_t free_port() { return testing::closed_port(); }

struct PgConnDeleter {
  void operator()(PGconn* c) const { PQfinish(c); }
};
using Conn = std::unique_ptr<PGconn, PgConnDeleter>;
struct PgResultDeleter {
  void operator()(PGresult* r) const { PQclear(r); }
};
using Result = std::unique_ptr<PGresult, PgResultDeleter>;

std::string sqlstate(const PGresult* r) {
  const char* s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  return s != nullptr ? s : "";
}

// One reservoird process with its own config, killed by the destructor.
class Reservoird {
 public:
  // main: extra lines for the [reservoird] section; databases: the [databases] lines.
  Reservoird(const testing::PostgresServer& server, const std::string& main,
             const std::string& databases)
      : port_(free_port()) {
    dir_ = std::filesystem::temp_directory_path() /
           ("reservoird-test-" + std::to_string(::getpid()) + "-" + std::to_string(port_));
    std::filesystem::create_directories(dir_);
    {
      std::ofstream users(dir_ / "users.txt");
      users << "\"" << server.user << "\" \"" << server.password << "\"\n";
      users << "\"md5user\" \"" << server::md5_hash("md5user", "md5pass") << "\"\n";
      if (!server.other_user.empty())
        users << "\"" << server.other_user << "\" \"" << server.other_password << "\"\n";
    }
    {
      std::ofstream ini(dir_ / "reservoird.ini");
      ini << "[databases]\n"
          << databases << "\n[reservoird]\nlisten_addr = 127.0.0.1\n"
          << "listen_port = " << port_ << "\nauth_file = users.txt\nworkers = 2\n"
          << "log_level = debug\n"
          << main << "\n";
    }
    const std::string ini = (dir_ / "reservoird.ini").string();
    const std::string log = (dir_ / "reservoird.log").string();
    pid_ = ::fork();
    if (pid_ == 0) {
      const int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      ::dup2(fd, 2);
      ::dup2(fd, 1);
      // RESERVOIRD_TEST_BINARY runs another build of it (e.g. a ThreadSanitizer one).
      const char* binary = std::getenv("RESERVOIRD_TEST_BINARY");
      if (binary == nullptr || *binary == '\0') binary = RESERVOIRD_BINARY;
      ::execl(binary, "reservoird", ini.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
    // Ready when it accepts connections (deadline 10 s).
    const auto deadline = Clock::now() + 10s;
    while (Clock::now() < deadline) {
      const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      a.sin_port = htons(port_);
      const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
      ::close(fd);
      if (ok) {
        ready_ = true;
        break;
      }
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(20ms);
    }
  }
  ~Reservoird() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      const auto deadline = Clock::now() + 15s;
      int status = 0;
      while (::waitpid(pid_, &status, WNOHANG) != pid_) {
        if (Clock::now() > deadline) {
          ::kill(pid_, SIGKILL);
          ::waitpid(pid_, &status, 0);
          break;
        }
        std::this_thread::sleep_for(10ms);
      }
    }
    std::error_code ec;
    if (!::testing::Test::HasFailure()) std::filesystem::remove_all(dir_, ec);
  }
  Reservoird(const Reservoird&) = delete;
  Reservoird& operator=(const Reservoird&) = delete;

  bool ready() const { return ready_; }
  void hup() const { ::kill(pid_, SIGHUP); }
  std::uint16_t port() const { return port_; }
  std::string log() const {
    std::ifstream in(dir_ / "reservoird.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  // SIGTERM, then the exit status (-1 if it did not exit within 15 s).
  int stop() {
    ::kill(pid_, SIGTERM);
    const auto deadline = Clock::now() + 15s;
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) != pid_) {
      if (Clock::now() > deadline) return -1;
      std::this_thread::sleep_for(10ms);
    }
    pid_ = -1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  }

  std::string conninfo(const std::string& db, const std::string& user, const std::string& password,
                       const std::string& extra = {}) const {
    return "host=127.0.0.1 port=" + std::to_string(port_) + " dbname=" + db + " user=" + user +
           " password=" + password + " connect_timeout=5 " + extra;
  }

 private:
  std::uint16_t port_;
  std::filesystem::path dir_;
  pid_t pid_ = -1;
  bool ready_ = false;
};

class PgReservoirdTest : public testing::PostgresTest {
 protected:
  std::string dbline(const std::string& name, const std::string& extra) const {
    return name + " = host=127.0.0.1 port=" + std::to_string(pg().port) +
           " dbname=" + pg().database + " " + extra + "\n";
  }
  std::string standard_databases() const {
    return dbline("sess", "pool_size=2 pool_mode=session") +
           dbline("tx", "pool_size=2 pool_mode=transaction") +
           dbline("tx1", "pool_size=1 pool_mode=transaction") +
           dbline("stmt", "pool_size=2 pool_mode=statement");
  }
  Conn open(const Reservoird& r, const std::string& db, const std::string& extra = {}) {
    Conn c(PQconnectdb(r.conninfo(db, pg().user, pg().password, extra).c_str()));
    EXPECT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get()) << r.log();
    return c;
  }
  static std::string one(PGconn* c, const std::string& sql) {
    Result r(PQexec(c, sql.c_str()));
    EXPECT_EQ(PQresultStatus(r.get()), PGRES_TUPLES_OK) << sql << ": " << PQerrorMessage(c);
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK || PQntuples(r.get()) < 1) return "";
    return PQgetvalue(r.get(), 0, 0);
  }
  static void ok(PGconn* c, const std::string& sql) {
    Result r(PQexec(c, sql.c_str()));
    const auto s = PQresultStatus(r.get());
    EXPECT_TRUE(s == PGRES_COMMAND_OK || s == PGRES_TUPLES_OK) << sql << ": " << PQerrorMessage(c);
  }
  // A direct connection to the server (not through reservoird).
  Conn direct() {
    Conn c(PQconnectdb(("host=" + pg().host + " port=" + std::to_string(pg().port) +
                        " dbname=" + pg().database + " user=" + pg().user +
                        " password=" + pg().password + " connect_timeout=5")
                           .c_str()));
    EXPECT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get());
    return c;
  }
};

// A raw protocol client (this codec and auth code as the client side): for what libpq cannot
// send, such as simple queries written before the previous one's reply.
class RawClient {
 public:
  explicit RawClient(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  }
  ~RawClient() { ::close(fd_); }
  RawClient(const RawClient&) = delete;
  RawClient& operator=(const RawClient&) = delete;

  // Logs in; returns the SQLSTATE of the ErrorResponse, "" when the login succeeded, or
  // "connect" / "eof" / "timeout".
  std::string login(const std::string& user, const std::string& db, const std::string& password) {
    if (!connected_) return "connect";
    std::string out;
    pg::put_startup_message(out, {{"user", user}, {"database", db}});
    send(out);
    std::unique_ptr<server::ScramClient> scram;
    const auto deadline = Clock::now() + 10s;
    while (true) {
      std::optional<pg::Message> m = next(deadline);
      if (!m) return eof_ ? "eof" : "timeout";
      if (m->type == 'E') return pg::parse_error_fields(m->body).sqlstate;
      if (m->type == 'Z') return "";
      if (m->type != 'R') continue;
      const pg::AuthRequest r = pg::parse_authentication(m->body);
      out.clear();
      if (r.code == pg::AuthCode::cleartext) pg::put_password_message(out, password);
      if (r.code == pg::AuthCode::md5)
        pg::put_password_message(out,
                                 server::md5_response(server::md5_hash(user, password), r.salt));
      if (r.code == pg::AuthCode::sasl) {
        scram = std::make_unique<server::ScramClient>(user, password);
        pg::put_sasl_initial_response(out, "SCRAM-SHA-256", scram->first());
      }
      if (r.code == pg::AuthCode::sasl_continue) pg::put_sasl_response(out, scram->final(r.data));
      if (!out.empty()) send(out);
    }
  }
  void send(const std::string& bytes) const {
    ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  }
  void query(const std::string& sql) const {
    std::string out;
    pg::put_query(out, sql);
    send(out);
  }
  // The next whole message before the deadline (nullopt: EOF or the deadline).
  std::optional<pg::Message> next(Clock::time_point deadline) {
    if (used_ > 0) {
      in_.erase(0, used_);
      used_ = 0;
    }
    while (Clock::now() < deadline) {
      if (std::optional<pg::Message> m = pg::read_message(in_, &used_)) return m;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) {
        eof_ = true;
        return std::nullopt;
      }
      in_.append(buf, static_cast<std::size_t>(n));
    }
    return std::nullopt;
  }

 private:
  int fd_;
  bool connected_ = false;
  bool eof_ = false;
  std::string in_;
  std::size_t used_ = 0;
};

std::string raw_login(std::uint16_t port, const std::string& user, const std::string& db,
                      const std::string& password) {
  RawClient c(port);
  return c.login(user, db, password);
}

TEST_F(PgReservoirdTest, QueriesInEveryPoolModeWithLibpqAndPsql) {
  Reservoird r(pg(), "auth_type = trust", standard_databases());
  ASSERT_TRUE(r.ready()) << r.log();
  for (const char* db : {"sess", "tx", "stmt"}) {
    Conn c = open(r, db);
    EXPECT_EQ(one(c.get(), "SELECT 40 + 2"), "42") << db;
    EXPECT_EQ(one(c.get(), "SELECT current_database()"), pg().database);
    // Extended protocol with parameters.
    const char* values[] = {"7"};
    Result x(PQexecParams(c.get(), "SELECT $1::int * 6", 1, nullptr, values, nullptr, nullptr, 0));
    ASSERT_EQ(PQresultStatus(x.get()), PGRES_TUPLES_OK) << PQerrorMessage(c.get());
    EXPECT_STREQ(PQgetvalue(x.get(), 0, 0), "42");
    EXPECT_STRNE(PQparameterStatus(c.get(), "server_version"), nullptr);
  }
  {
    Conn c = open(r, "tx");
    ok(c.get(), "BEGIN");
    ok(c.get(), "CREATE TEMP TABLE t_rsv(x int)");
    ok(c.get(), "INSERT INTO t_rsv VALUES (1), (2)");
    EXPECT_EQ(one(c.get(), "SELECT sum(x) FROM t_rsv"), "3");
    ok(c.get(), "COMMIT");
  }
  const std::string cmd = "PGPASSWORD='" + pg().password +
                          "' timeout 20 psql -X -At -h 127.0.0.1 -p " + std::to_string(r.port()) +
                          " -U " + pg().user +
                          " -d tx -c 'SELECT 6 * 7' -c 'SELECT 1' 2>&1 </dev/null";
  FILE* pipe = ::popen(cmd.c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buf[256];
  while (std::fgets(buf, sizeof buf, pipe) != nullptr) output += buf;
  EXPECT_EQ(::pclose(pipe), 0) << output;
  EXPECT_EQ(output, "42\n1\n");
}

TEST_F(PgReservoirdTest, StatementModeRefusesTransactionBlocks) {
  Reservoird r(pg(), "auth_type = trust", standard_databases());
  ASSERT_TRUE(r.ready()) << r.log();
  Conn c = open(r, "stmt");
  EXPECT_EQ(one(c.get(), "SELECT 1"), "1");
  Result x(PQexec(c.get(), "BEGIN"));
  std::string messages = PQerrorMessage(c.get());
  Result y(PQexec(c.get(), "SELECT 1"));
  messages += PQerrorMessage(c.get());
  EXPECT_NE(PQresultStatus(y.get()), PGRES_TUPLES_OK);
  EXPECT_NE(messages.find("statement pooling"), std::string::npos) << messages;
}

TEST_F(PgReservoirdTest, TransactionPoolingIsolationAndDrcpPurity) {
  Reservoird r(pg(), "auth_type = trust", standard_databases());
  ASSERT_TRUE(r.ready()) << r.log();
  const std::string fresh = one(direct().get(), "SHOW work_mem");
  // A SET inside a transaction that rolls back is gone for the next client of the one server
  // connection.
  {
    Conn a = open(r, "tx1");
    ok(a.get(), "BEGIN");
    ok(a.get(), "SET work_mem = '7MB'");
    EXPECT_EQ(one(a.get(), "SHOW work_mem"), "7MB");
    ok(a.get(), "ROLLBACK");
  }
  {
    Conn b = open(r, "tx1");
    EXPECT_EQ(one(b.get(), "SHOW work_mem"), fresh);
  }
  // DRCP: a class's session state stays with that class (purity self); purity new and another
  // class get a reset session.
  {
    Conn a = open(r, "tx1", "options='-c reservoir.cclass=REPORTING'");
    ok(a.get(), "SET work_mem = '9MB'");
  }
  {
    Conn same = open(r, "tx1", "options='-c reservoir.cclass=REPORTING -c reservoir.purity=self'");
    EXPECT_EQ(one(same.get(), "SHOW work_mem"), "9MB");
  }
  {
    Conn fresh_session =
        open(r, "tx1", "options='-c reservoir.cclass=REPORTING -c reservoir.purity=new'");
    EXPECT_EQ(one(fresh_session.get(), "SHOW work_mem"), fresh);
  }
  {
    Conn a = open(r, "tx1", "options='-c reservoir.cclass=REPORTING'");
    ok(a.get(), "SET work_mem = '9MB'");
  }
  {
    Conn other = open(r, "tx1", "options='-c reservoir.cclass=BATCH'");
    EXPECT_EQ(one(other.get(), "SHOW work_mem"), fresh);
  }
  Conn bad = Conn(PQconnectdb(
      r.conninfo("tx1", pg().user, pg().password, "options='-c reservoir.purity=dirty'").c_str()));
  EXPECT_NE(PQstatus(bad.get()), CONNECTION_OK);
}

TEST_F(PgReservoirdTest, MoreClientsThanServerConnectionsAllGetServed) {
  Reservoird r(pg(), "auth_type = trust", standard_databases());
  ASSERT_TRUE(r.ready()) << r.log();
  const std::string app = "rsv_many_" + std::to_string(::getpid());
  std::atomic<int> done{0};
  std::atomic<int> failed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 12; ++t) {
    threads.emplace_back([&, t] {
      Conn c(PQconnectdb(
          r.conninfo("tx", pg().user, pg().password, "application_name=" + app).c_str()));
      if (PQstatus(c.get()) != CONNECTION_OK) {
        ++failed;
        return;
      }
      for (int i = 0; i < 30; ++i) {
        Result x(
            PQexec(c.get(), ("BEGIN; SELECT " + std::to_string(t * 100 + i) + "; COMMIT").c_str()));
        Result y(PQexec(c.get(), "SELECT pg_backend_pid()"));
        if (PQresultStatus(y.get()) != PGRES_TUPLES_OK) ++failed;
      }
      ++done;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failed.load(), 0) << r.log();
  EXPECT_EQ(done.load(), 12);
  // Only two server connections were ever used.
  Conn d = direct();
  EXPECT_LE(std::stoi(one(d.get(),
                          "SELECT count(*) FROM pg_stat_activity WHERE "
                          "application_name = '" +
                              app + "'")),
            2);
}

TEST_F(PgReservoirdTest, AuthFailuresGiveTheRightSqlstate) {
  for (const char* type : {"trust", "md5", "scram-sha-256", "plain"}) {
    Reservoird r(pg(), std::string("auth_type = ") + type, standard_databases());
    ASSERT_TRUE(r.ready()) << r.log();
    SCOPED_TRACE(type);
    EXPECT_EQ(raw_login(r.port(), pg().user, "tx", pg().password), "");
    EXPECT_EQ(raw_login(r.port(), pg().user, "nosuchdb", pg().password), "3D000");
    if (std::string(type) != "trust") {
      EXPECT_EQ(raw_login(r.port(), pg().user, "tx", "wrong-password"), "28P01");
      EXPECT_EQ(raw_login(r.port(), "nosuchuser", "tx", "x"), "28000");
      // libpq too.
      Conn c(PQconnectdb(r.conninfo("tx", pg().user, pg().password).c_str()));
      EXPECT_EQ(PQstatus(c.get()), CONNECTION_OK) << PQerrorMessage(c.get());
      Conn w(PQconnectdb(r.conninfo("tx", pg().user, "wrong").c_str()));
      EXPECT_NE(PQstatus(w.get()), CONNECTION_OK);
      EXPECT_NE(std::string(PQerrorMessage(w.get())).find("password authentication failed"),
                std::string::npos);
    }
    if (std::string(type) == "md5") {
      // An md5 secret in auth_file checks the client's password (md5user has no role on the
      // server, so only the refusal is certain to come from reservoird).
      EXPECT_EQ(raw_login(r.port(), "md5user", "tx", "bad"), "28P01");
    }
    EXPECT_EQ(r.log().find(pg().password), std::string::npos) << "a password in the log";
  }
}

TEST_F(PgReservoirdTest, ErrorInsideExtendedPipelineIsDrainedToSync) {
  Reservoird r(pg(), "auth_type = trust", standard_databases());
  ASSERT_TRUE(r.ready()) << r.log();
  for (const char* db : {"tx", "sess"}) {
    Conn c = open(r, db);
    ASSERT_EQ(PQenterPipelineMode(c.get()), 1);
    const char* v1[] = {"0"};
    ASSERT_EQ(PQsendQueryParams(c.get(), "SELECT 1 / $1::int", 1, nullptr, v1, nullptr, nullptr, 0),
              1);
    ASSERT_EQ(PQsendQueryParams(c.get(), "SELECT 2", 0, nullptr, nullptr, nullptr, nullptr, 0), 1);
    ASSERT_EQ(PQpipelineSync(c.get()), 1);
    Result r1(PQgetResult(c.get()));
    EXPECT_EQ(PQresultStatus(r1.get()), PGRES_FATAL_ERROR);
    EXPECT_EQ(sqlstate(r1.get()), "22012");
    while (PGresult* x = PQgetResult(c.get())) PQclear(x);
    Result r2(PQgetResult(c.get()));
    EXPECT_EQ(PQresultStatus(r2.get()), PGRES_PIPELINE_ABORTED);
    while (PGresult* x = PQgetResult(c.get())) PQclear(x);
    Result s(PQgetResult(c.get()));
    EXPECT_EQ(PQresultStatus(s.get()), PGRES_PIPELINE_SYNC);
    ASSERT_EQ(PQexitPipelineMode(c.get()), 1) << PQerrorMessage(c.get());
    EXPECT_EQ(one(c.get(), "SELECT 3"), "3") << db;
  }
}

// A simple query written while the previous one still runs (a client may pipeline Query
// messages): it arrives while reservoird waits for the server only, and must still be read and
// answered once the first reply is through, in every pool mode.
TEST_F(PgReservoirdTest, QueryWrittenBeforeThePreviousReplyIsAnswered) {
  Reservoird r(pg(), "auth_type = trust", standard_databases());
  ASSERT_TRUE(r.ready()) << r.log();
  for (const char* db : {"tx", "sess", "stmt"}) {
    for (int round = 0; round < 3; ++round) {
      RawClient c(r.port());
      ASSERT_EQ(c.login(pg().user, db, ""), "") << db;
      c.query("SELECT pg_sleep(0.2)");
      std::this_thread::sleep_for(50ms);  // the first query is on the server by now
      c.query("SELECT 2");
      int ready = 0;
      std::string last_value, seen;
      const auto deadline = Clock::now() + 10s;
      while (ready < 2) {
        std::optional<pg::Message> m = c.next(deadline);
        ASSERT_TRUE(m.has_value()) << db << ": " << ready << " replies of 2 (" << seen << ")\n"
                                   << r.log();
        seen.push_back(m->type);
        ASSERT_NE(m->type, 'E') << db << ": " << pg::parse_error_fields(m->body).message;
        if (m->type == 'D') last_value = std::string(m->body.substr(m->body.size() - 1));
        if (m->type == 'Z') ++ready;
      }
      EXPECT_EQ(last_value, "2") << db;
    }
  }
}

// Transaction and statement mode: a statement a client prepares under a name lasts for its
// transaction (DEALLOCATE ALL runs before the server connection goes back). Another client of
// the same server connection can prepare the same name for other SQL (no 42P05), and the first
// client's later use of the name is an error (26000), never the other client's statement.
TEST_F(PgReservoirdTest, NamedStatementsLastForTheirTransactionInTransactionMode) {
  Reservoird r(pg(), "auth_type = trust", standard_databases());
  ASSERT_TRUE(r.ready()) << r.log();
  // Prepares and runs `name` for sql inside one transaction; the value it returned.
  auto prepare_and_run = [](PGconn* c, const char* name, const char* sql) -> std::string {
    ok(c, "BEGIN");
    Result p(PQprepare(c, name, sql, 0, nullptr));
    EXPECT_EQ(PQresultStatus(p.get()), PGRES_COMMAND_OK)
        << sql << ": " << sqlstate(p.get()) << " " << PQerrorMessage(c);
    Result e(PQexecPrepared(c, name, 0, nullptr, nullptr, nullptr, 0));
    EXPECT_EQ(PQresultStatus(e.get()), PGRES_TUPLES_OK) << sql << ": " << PQerrorMessage(c);
    std::string value = PQresultStatus(e.get()) == PGRES_TUPLES_OK ? PQgetvalue(e.get(), 0, 0) : "";
    ok(c, "COMMIT");
    return value;
  };
  Conn a = open(r, "tx1");  // one server connection: both clients get it
  Conn b = open(r, "tx1");
  EXPECT_EQ(prepare_and_run(a.get(), "s1", "SELECT 1"), "1");
  EXPECT_EQ(prepare_and_run(b.get(), "s1", "SELECT 2"), "2");
  Result again(PQexecPrepared(a.get(), "s1", 0, nullptr, nullptr, nullptr, 0));
  EXPECT_EQ(PQresultStatus(again.get()), PGRES_FATAL_ERROR)
      << "ran " << (PQntuples(again.get()) > 0 ? PQgetvalue(again.get(), 0, 0) : "?");
  EXPECT_EQ(sqlstate(again.get()), "26000");
  EXPECT_EQ(one(a.get(), "SELECT 3"), "3");  // the client and its connection go on
  // Outside a transaction block a prepared name lasts for its Sync: PQprepare alone, then a
  // use of the name, is 26000 in transaction mode.
  Result p(PQprepare(b.get(), "s2", "SELECT 4", 0, nullptr));
  ASSERT_EQ(PQresultStatus(p.get()), PGRES_COMMAND_OK) << PQerrorMessage(b.get());
  Result e(PQexecPrepared(b.get(), "s2", 0, nullptr, nullptr, nullptr, 0));
  EXPECT_EQ(sqlstate(e.get()), "26000");
  // Statement mode: every statement is its own transaction.
  Conn s = open(r, "stmt");
  Result ps(PQprepare(s.get(), "s3", "SELECT 5", 0, nullptr));
  ASSERT_EQ(PQresultStatus(ps.get()), PGRES_COMMAND_OK) << PQerrorMessage(s.get());
  Result es(PQexecPrepared(s.get(), "s3", 0, nullptr, nullptr, nullptr, 0));
  EXPECT_EQ(sqlstate(es.get()), "26000");
  EXPECT_EQ(one(s.get(), "SELECT 6"), "6");
  // Session mode keeps them, as the server would.
  Conn k = open(r, "sess");
  Result pk(PQprepare(k.get(), "s4", "SELECT 7", 0, nullptr));
  ASSERT_EQ(PQresultStatus(pk.get()), PGRES_COMMAND_OK) << PQerrorMessage(k.get());
  Result ek(PQexecPrepared(k.get(), "s4", 0, nullptr, nullptr, nullptr, 0));
  ASSERT_EQ(PQresultStatus(ek.get()), PGRES_TUPLES_OK) << PQerrorMessage(k.get());
  EXPECT_STREQ(PQgetvalue(ek.get(), 0, 0), "7");
}

TEST_F(PgReservoirdTest, ClientKilledMidTransactionLeavesNoOpenTransaction) {
  Reservoird r(pg(), "auth_type = trust", standard_databases());
  ASSERT_TRUE(r.ready()) << r.log();
  {
    Conn a = open(r, "tx1");
    ok(a.get(), "BEGIN");
    ok(a.get(), "SET work_mem = '11MB'");
    ok(a.get(), "CREATE TEMP TABLE t_killed(x int)");
    ::shutdown(PQsocket(a.get()), SHUT_RDWR);  // gone without Terminate
  }
  Conn b = open(r, "tx1");
  EXPECT_NE(one(b.get(), "SHOW work_mem"), "11MB");
  EXPECT_EQ(one(b.get(), "SELECT count(*) FROM pg_class WHERE relname = 't_killed'"), "0");
  Result x(PQexec(b.get(), "BEGIN"));
  EXPECT_EQ(PQresultStatus(x.get()), PGRES_COMMAND_OK);
  ok(b.get(), "ROLLBACK");
  // No server session of this user sits idle in a transaction.
  Conn d = direct();
  const auto deadline = Clock::now() + 5s;
  std::string n;
  while (Clock::now() < deadline) {
    n = one(d.get(),
            "SELECT count(*) FROM pg_stat_activity WHERE state LIKE 'idle in transaction%' AND "
            "usename = current_user AND pid <> pg_backend_pid()");
    if (n == "0") break;
    std::this_thread::sleep_for(50ms);
  }
  EXPECT_EQ(n, "0");
}

TEST_F(PgReservoirdTest, CancelReachesTheRightServer) {
  Reservoird r(pg(), "auth_type = trust", standard_databases());
  ASSERT_TRUE(r.ready()) << r.log();
  for (const char* db : {"sess", "tx"}) {
    Conn c = open(r, db);
    Conn bystander = open(r, db);
    std::unique_ptr<PGcancel, decltype(&PQfreeCancel)> cancel(PQgetCancel(c.get()), PQfreeCancel);
    ASSERT_NE(cancel, nullptr);
    const auto start = Clock::now();
    std::thread canceller([&] {
      std::this_thread::sleep_for(300ms);
      char err[256];
      PQcancel(cancel.get(), err, sizeof err);
    });
    Result x(PQexec(c.get(), "SELECT pg_sleep(10)"));
    canceller.join();
    const auto took = Clock::now() - start;
    EXPECT_EQ(PQresultStatus(x.get()), PGRES_FATAL_ERROR) << db;
    EXPECT_EQ(sqlstate(x.get()), "57014") << PQerrorMessage(c.get());
    EXPECT_LT(took, 5s);
    EXPECT_EQ(one(c.get(), "SELECT 1"), "1");
    EXPECT_EQ(one(bystander.get(), "SELECT 2"), "2");
  }
}

TEST_F(PgReservoirdTest, ServerKilledMidQueryGivesTheClientAnError) {
  Reservoird r(pg(), "auth_type = trust", standard_databases());
  ASSERT_TRUE(r.ready()) << r.log();
  Conn c = open(r, "sess");
  const std::string pid = one(c.get(), "SELECT pg_backend_pid()");
  std::thread killer([&] {
    std::this_thread::sleep_for(300ms);
    Conn d = direct();
    one(d.get(), "SELECT pg_terminate_backend(" + pid + ")");
  });
  const auto start = Clock::now();
  Result x(PQexec(c.get(), "SELECT pg_sleep(10)"));
  killer.join();
  EXPECT_EQ(PQresultStatus(x.get()), PGRES_FATAL_ERROR);
  EXPECT_LT(Clock::now() - start, 5s);
  // A new client is served by a new server connection.
  Conn again = open(r, "sess");
  EXPECT_EQ(one(again.get(), "SELECT 1"), "1");
}

TEST_F(PgReservoirdTest, MaxClientConnIsEnforced) {
  Reservoird r(pg(), "auth_type = trust\nmax_client_conn = 2", standard_databases());
  ASSERT_TRUE(r.ready()) << r.log();
  Conn a = open(r, "tx");
  Conn b = open(r, "tx");
  EXPECT_EQ(raw_login(r.port(), pg().user, "tx", ""), "53300");
  Conn c(PQconnectdb(r.conninfo("tx", pg().user, pg().password).c_str()));
  EXPECT_NE(PQstatus(c.get()), CONNECTION_OK);
  EXPECT_NE(std::string(PQerrorMessage(c.get())).find("max_client_conn"), std::string::npos)
      << PQerrorMessage(c.get());
  a.reset();
  // The place is free again (the session ends asynchronously: retry up to 5 s).
  const auto deadline = Clock::now() + 5s;
  bool served = false;
  while (!served && Clock::now() < deadline) {
    Conn d(PQconnectdb(r.conninfo("tx", pg().user, pg().password).c_str()));
    served = PQstatus(d.get()) == CONNECTION_OK;
    if (!served) std::this_thread::sleep_for(50ms);
  }
  EXPECT_TRUE(served);
}

TEST_F(PgReservoirdTest, QueryWaitTimeoutAndIdleTransactionTimeout) {
  Reservoird r(pg(), "auth_type = trust\nquery_wait_timeout = 1\nidle_transaction_timeout = 2",
               standard_databases());
  ASSERT_TRUE(r.ready()) << r.log();
  Conn holder = open(r, "tx1");
  ok(holder.get(), "BEGIN");     // holds the pool's one server connection
  Conn waiter = open(r, "tx1");  // logs in from the cached parameters, no server needed
  const auto start = Clock::now();
  Result x(PQexec(waiter.get(), "SELECT 1"));
  const auto took = Clock::now() - start;
  EXPECT_NE(PQresultStatus(x.get()), PGRES_TUPLES_OK);
  EXPECT_NE(std::string(PQerrorMessage(waiter.get())).find("query_wait_timeout"), std::string::npos)
      << PQerrorMessage(waiter.get());
  EXPECT_GE(took, 900ms);
  EXPECT_LT(took, 5s);
  // The holder idles in its transaction past idle_transaction_timeout: disconnected.
  std::this_thread::sleep_for(2500ms);
  Result y(PQexec(holder.get(), "SELECT 1"));
  EXPECT_NE(PQresultStatus(y.get()), PGRES_TUPLES_OK);
  Conn next = open(r, "tx1");
  EXPECT_EQ(one(next.get(), "SELECT 1"), "1");
}

TEST_F(PgReservoirdTest, ClientIdleTimeoutInSessionAndTransactionMode) {
  Reservoird r(pg(), "auth_type = trust\nclient_idle_timeout = 1", standard_databases());
  ASSERT_TRUE(r.ready()) << r.log();
  for (const char* db : {"sess", "tx"}) {
    Conn c = open(r, db);
    EXPECT_EQ(one(c.get(), "SELECT 1"), "1");
    std::this_thread::sleep_for(1500ms);
    Result x(PQexec(c.get(), "SELECT 1"));
    EXPECT_NE(PQresultStatus(x.get()), PGRES_TUPLES_OK) << db;
  }
  Conn again = open(r, "sess");
  EXPECT_EQ(one(again.get(), "SELECT 2"), "2");
}

TEST_F(PgReservoirdTest, ParameterStatusFollowsTheServerConnection) {
  Reservoird r(pg(), "auth_type = trust", standard_databases());
  ASSERT_TRUE(r.ready()) << r.log();
  Conn c = open(r, "sess");
  ok(c.get(), "SET TimeZone = 'Asia/Tokyo'");
  EXPECT_STREQ(PQparameterStatus(c.get(), "TimeZone"), "Asia/Tokyo");
  ok(c.get(), "SET application_name = 'rsv-x'");
  EXPECT_STREQ(PQparameterStatus(c.get(), "application_name"), "rsv-x");
}

TEST_F(PgReservoirdTest, SigtermExitsZeroAndReloadKeepsClients) {
  Reservoird r(pg(), "auth_type = trust", standard_databases());
  ASSERT_TRUE(r.ready()) << r.log();
  Conn c = open(r, "sess");
  EXPECT_EQ(one(c.get(), "SELECT 1"), "1");
  r.hup();
  const auto deadline = Clock::now() + 5s;
  while (r.log().find("configuration reloaded") == std::string::npos && Clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  EXPECT_NE(r.log().find("configuration reloaded"), std::string::npos);
  EXPECT_EQ(one(c.get(), "SELECT 2"), "2");  // the client was not dropped
  c.reset();
  EXPECT_EQ(r.stop(), 0) << r.log();
}

TEST_F(PgReservoirdTest, AdminConsole) {
  Reservoird r(pg(), "auth_type = trust\nadmin_users = " + pg().user + "\nstats_users = statsuser",
               standard_databases());
  ASSERT_TRUE(r.ready()) << r.log();
  Conn client = open(r, "tx", "options='-c reservoir.cclass=REPORTING'");
  EXPECT_EQ(one(client.get(), "SELECT 1"), "1");
  Conn admin = open(r, "pgbouncer");
  auto rows = [&](PGconn* c, const std::string& sql) {
    Result x(PQexec(c, sql.c_str()));
    EXPECT_EQ(PQresultStatus(x.get()), PGRES_TUPLES_OK) << sql << ": " << PQerrorMessage(c);
    std::vector<std::map<std::string, std::string>> out;
    for (int i = 0; i < PQntuples(x.get()); ++i) {
      std::map<std::string, std::string> row;
      for (int j = 0; j < PQnfields(x.get()); ++j)
        row[PQfname(x.get(), j)] = PQgetisnull(x.get(), i, j) ? "NULL" : PQgetvalue(x.get(), i, j);
      out.push_back(std::move(row));
    }
    return out;
  };
  auto pools = rows(admin.get(), "SHOW POOLS;");
  ASSERT_EQ(pools.size(), 1u);
  EXPECT_EQ(pools[0]["database"], "tx");
  EXPECT_EQ(pools[0]["pool_mode"], "transaction");
  EXPECT_EQ(pools[0]["sv_idle"], "1");
  auto cclass = rows(admin.get(), "show cclass");
  ASSERT_EQ(cclass.size(), 1u);
  EXPECT_EQ(cclass[0]["cclass"], "REPORTING");
  EXPECT_GE(std::stoi(cclass[0]["num_requests"]), 1);
  auto clients = rows(admin.get(), "SHOW CLIENTS");
  ASSERT_EQ(clients.size(), 1u);  // the console is not a pool client
  EXPECT_EQ(clients[0]["type"], "C");
  EXPECT_EQ(clients[0]["user"], pg().user);
  EXPECT_EQ(clients[0]["database"], "tx");
  EXPECT_EQ(clients[0]["state"], "idle");
  EXPECT_EQ(clients[0]["addr"], "127.0.0.1");
  EXPECT_GT(std::stoi(clients[0]["port"]), 0);
  EXPECT_EQ(clients[0]["cclass"], "REPORTING");
  EXPECT_EQ(rows(admin.get(), "SHOW SERVERS").size(), 0u);  // the client is between transactions
  EXPECT_EQ(rows(admin.get(), "SHOW STATS").size(), 1u);
  EXPECT_EQ(rows(admin.get(), "SHOW DATABASES").size(), 4u);
  EXPECT_FALSE(rows(admin.get(), "SHOW CONFIG").empty());
  EXPECT_EQ(rows(admin.get(), "SHOW VERSION")[0]["version"], "reservoird 0.1.0");
  Result bad(PQexec(admin.get(), "SHOW NONSENSE"));
  EXPECT_EQ(PQresultStatus(bad.get()), PGRES_FATAL_ERROR);

  // PAUSE holds new work until RESUME.
  ok(admin.get(), "PAUSE");
  std::atomic<bool> finished{false};
  std::thread t([&] {
    Result x(PQexec(client.get(), "SELECT 2"));
    finished = true;
  });
  std::this_thread::sleep_for(300ms);
  EXPECT_FALSE(finished.load());
  ok(admin.get(), "RESUME");
  t.join();
  EXPECT_TRUE(finished.load());
  ok(admin.get(), "RELOAD");

  // stats_users may look, not act; others may not log in.
  Conn stats(PQconnectdb(r.conninfo("reservoir", "statsuser", "x").c_str()));
  ASSERT_EQ(PQstatus(stats.get()), CONNECTION_OK) << PQerrorMessage(stats.get());
  EXPECT_EQ(rows(stats.get(), "SHOW POOLS").size(), 1u);
  Result refused(PQexec(stats.get(), "SHUTDOWN"));
  EXPECT_EQ(PQresultStatus(refused.get()), PGRES_FATAL_ERROR);
  Conn other(PQconnectdb(r.conninfo("reservoir", "someone", "x").c_str()));
  EXPECT_NE(PQstatus(other.get()), CONNECTION_OK);

  ok(admin.get(), "SHUTDOWN");
  EXPECT_EQ(r.stop(), 0) << r.log();
}

// The server sessions (pg_stat_activity) with this application_name: a pool's server
// connections carry its first client's.
int server_sessions(PGconn* direct, const std::string& application_name) {
  Result x(PQexec(direct, ("SELECT count(*) FROM pg_stat_activity WHERE application_name = '" +
                           application_name + "'")
                              .c_str()));
  if (PQresultStatus(x.get()) != PGRES_TUPLES_OK) return -1;
  return std::atoi(PQgetvalue(x.get(), 0, 0));
}

// Polls until server_sessions() == want (a closed backend leaves pg_stat_activity a little
// after its socket closes); returns the last count.
int await_server_sessions(PGconn* direct, const std::string& application_name, int want) {
  const auto deadline = Clock::now() + 5s;
  int n = server_sessions(direct, application_name);
  while (n != want && Clock::now() < deadline) {
    std::this_thread::sleep_for(20ms);
    n = server_sessions(direct, application_name);
  }
  return n;
}

TEST_F(PgReservoirdTest, ReservePoolServesAClientThatWaitedReservePoolTimeout) {
  Reservoird r(pg(),
               "auth_type = trust\nreserve_pool_size = 1\nreserve_pool_timeout = 500ms\n"
               "query_wait_timeout = 2",
               dbline("rsv", "pool_size=1 pool_mode=transaction"));
  ASSERT_TRUE(r.ready()) << r.log();
  Conn d = direct();
  const std::string app = "rsv_reserve_test";
  Conn holder = open(r, "rsv", "application_name=" + app);
  ok(holder.get(), "BEGIN");  // holds the pool's one server connection
  EXPECT_EQ(await_server_sessions(d.get(), app, 1), 1);
  // The second client waits reserve_pool_timeout, then gets the reserve connection.
  Conn waiter = open(r, "rsv", "application_name=" + app);
  auto start = Clock::now();
  ok(waiter.get(), "BEGIN");
  auto took = Clock::now() - start;
  EXPECT_GE(took, 450ms);
  EXPECT_LT(took, 1900ms) << "served by the reserve, not after query_wait_timeout";
  EXPECT_EQ(await_server_sessions(d.get(), app, 2), 2);
  // The reserve (1) is in use: a third client waits out query_wait_timeout.
  Conn third = open(r, "rsv", "application_name=" + app);
  start = Clock::now();
  Result x(PQexec(third.get(), "SELECT 1"));
  took = Clock::now() - start;
  EXPECT_NE(PQresultStatus(x.get()), PGRES_TUPLES_OK);
  EXPECT_NE(std::string(PQerrorMessage(third.get())).find("query_wait_timeout"), std::string::npos)
      << PQerrorMessage(third.get());
  EXPECT_GE(took, 1900ms);
  EXPECT_LT(took, 5s);
  EXPECT_EQ(server_sessions(d.get(), app), 2) << "never more than pool_size + reserve_pool_size";
  // Given back while the pool is over pool_size, the extra connection is closed.
  ok(waiter.get(), "COMMIT");
  EXPECT_EQ(await_server_sessions(d.get(), app, 1), 1);
  ok(holder.get(), "COMMIT");
  EXPECT_EQ(one(waiter.get(), "SELECT 5"), "5");
  EXPECT_EQ(server_sessions(d.get(), app), 1);
}

TEST_F(PgReservoirdTest, MaxDbConnectionsCapsServerConnectionsOverAllUserPools) {
  if (pg().other_user.empty()) GTEST_SKIP() << "the fixture has no second user";
  Reservoird r(pg(), "auth_type = trust\nquery_wait_timeout = 5",
               dbline("lim", "pool_size=3 max_db_connections=2 pool_mode=transaction"));
  ASSERT_TRUE(r.ready()) << r.log();
  Conn d = direct();
  const std::string app = "rsv_maxdb_test";
  // Another user's pool of the same database. Its first login takes a server connection (for
  // the ParameterStatus set), which stays idle in that pool.
  Conn b(PQconnectdb(
      r.conninfo("lim", pg().other_user, pg().other_password, "application_name=" + app).c_str()));
  ASSERT_EQ(PQstatus(b.get()), CONNECTION_OK) << PQerrorMessage(b.get()) << r.log();
  Conn a1 = open(r, "lim", "application_name=" + app);
  Conn a2 = open(r, "lim", "application_name=" + app);
  ok(a1.get(), "BEGIN");
  ok(a2.get(), "BEGIN");  // at the cap: b's idle connection is closed to make room
  EXPECT_EQ(await_server_sessions(d.get(), app, 2), 2);
  // Now b's client waits for room under the cap.
  std::atomic<bool> done{false};
  std::string b_answer;
  const auto start = Clock::now();
  std::thread t([&] {
    Result x(PQexec(b.get(), "SELECT current_user"));
    if (PQresultStatus(x.get()) == PGRES_TUPLES_OK) b_answer = PQgetvalue(x.get(), 0, 0);
    done = true;
  });
  std::this_thread::sleep_for(700ms);
  EXPECT_FALSE(done.load()) << "max_db_connections = 2 and both are in use";
  EXPECT_EQ(server_sessions(d.get(), app), 2);
  // a1's connection goes idle in its pool; b's pool closes it and opens its own.
  ok(a1.get(), "COMMIT");
  t.join();
  EXPECT_GE(Clock::now() - start, 650ms);
  EXPECT_EQ(b_answer, pg().other_user) << r.log();
  EXPECT_EQ(await_server_sessions(d.get(), app, 2), 2);
  // And back: a1's pool takes the room of b's idle connection.
  EXPECT_EQ(one(a1.get(), "SELECT current_user"), pg().user);
  EXPECT_EQ(await_server_sessions(d.get(), app, 2), 2);
  ok(a2.get(), "COMMIT");
  EXPECT_EQ(one(b.get(), "SELECT 1"), "1");
  EXPECT_LE(server_sessions(d.get(), app), 2);
}

// Runs a shell command (bounded by the `timeout` it is given), returns its exit status and
// output.
std::pair<int, std::string> run_command(const std::string& cmd) {
  FILE* pipe = ::popen((cmd + " 2>&1 </dev/null").c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::string output;
  char buf[512];
  while (std::fgets(buf, sizeof buf, pipe) != nullptr) output += buf;
  const int status = ::pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

// Debian's python3-psycopg (psycopg 3) through reservoird in transaction mode with SCRAM:
// parameters, a transaction, a server-side error. /usr/bin/python3 explicitly: another
// python3 may come first on PATH. psycopg prepares a statement executed prepare_threshold (5)
// times under a name, which transaction pooling cannot keep: prepare_threshold=None.
TEST_F(PgReservoirdTest, PsycopgThroughTransactionModeWithScram) {
  if (::access("/usr/bin/python3", X_OK) != 0) GTEST_SKIP() << "no /usr/bin/python3";
  if (run_command("/usr/bin/python3 -c 'import psycopg'").first != 0)
    GTEST_SKIP() << "python3-psycopg is not installed";
  Reservoird r(pg(), "auth_type = scram-sha-256", standard_databases());
  ASSERT_TRUE(r.ready()) << r.log();
  const std::string script = (std::filesystem::temp_directory_path() /
                              ("rsv-psycopg-" + std::to_string(::getpid()) + ".py"))
                                 .string();
  {
    std::ofstream out(script);
    out << R"PY(import sys
import psycopg
port, user, password = sys.argv[1], sys.argv[2], sys.argv[3]
with psycopg.connect(host="127.0.0.1", port=port, dbname="tx", user=user, password=password,
                     connect_timeout=5, prepare_threshold=None) as c:
    for i in range(20):
        assert c.execute("SELECT %s::int * 6", (i,)).fetchone()[0] == i * 6
    c.commit()
    with c.transaction():
        c.execute("CREATE TEMP TABLE t_py(x int) ON COMMIT DROP")
        c.execute("INSERT INTO t_py VALUES (%s), (%s)", (1, 2))
        assert c.execute("SELECT sum(x) FROM t_py").fetchone()[0] == 3
    try:
        c.execute("SELECT 1 / %s", (0,))
        sys.exit("no error")
    except psycopg.errors.DivisionByZero:
        c.rollback()
    assert c.execute("SELECT %s || 'ok'", ("still ",)).fetchone()[0] == "still ok"
    c.commit()
try:
    psycopg.connect(host="127.0.0.1", port=port, dbname="tx", user=user, password="wrong",
                    connect_timeout=5)
    sys.exit("a wrong password was accepted")
except psycopg.OperationalError as e:
    assert "password" in str(e), str(e)
print("psycopg ok")
)PY";
  }
  auto [status, output] =
      run_command("env -u PYTHONPATH -u PYTHONHOME timeout 60 /usr/bin/python3 " + script + " " +
                  std::to_string(r.port()) + " " + pg().user + " '" + pg().password + "'");
  std::filesystem::remove(script);
  EXPECT_EQ(status, 0) << output << r.log();
  EXPECT_NE(output.find("psycopg ok"), std::string::npos) << output;
}

// pgJDBC (Debian's libpostgresql-jdbc-java, 42.5.5) through reservoird with SCRAM: the client is
// tests/integration/jdbc/ReservoirdJdbcClient.java, run by the JDK's single-file source launcher
// (`java File.java` compiles it in memory, so it needs the JDK's compiler:
// openjdk-17-jdk-headless). /usr/bin/java explicitly: another java first on PATH may be too old
// for the source launcher.
constexpr const char* kJava = "/usr/bin/java";
constexpr const char* kPgJdbcJar = "/usr/share/java/postgresql.jar";

// Why the JDBC tests cannot run here, or "" when they can.
std::string jdbc_missing() {
  if (::access(kJava, X_OK) != 0) return std::string("no ") + kJava;
  if (::access(kPgJdbcJar, R_OK) != 0)
    return std::string("no ") + kPgJdbcJar + " (Debian libpostgresql-jdbc-java)";
  return "";
}

// Runs the Java client: MODE PORT DATABASE USER PASSWORD URL_PARAMETERS [more]. Bounded by
// `timeout 120`; the JVM's option variables are unset so that nothing else changes it.
std::pair<int, std::string> run_jdbc(const Reservoird& r, const testing::PostgresServer& server,
                                     const std::string& mode, const std::string& db,
                                     const std::string& parameters, const std::string& more = {}) {
  return run_command(
      std::string("env -u JAVA_TOOL_OPTIONS -u _JAVA_OPTIONS -u JDK_JAVA_OPTIONS -u CLASSPATH ") +
      "timeout 120 " + kJava + " -cp " + kPgJdbcJar + " " + RESERVOIRD_JDBC_CLIENT + " " + mode +
      " " + std::to_string(r.port()) + " " + db + " " + server.user + " '" + server.password +
      "' '" + parameters + "' " + more);
}

// Session mode, pgJDBC's defaults: its PreparedStatement becomes a named server-side statement
// at the 5th execution (the client checks pg_prepared_statements), which session mode keeps.
// Parameters, commit and rollback, 22012 with the connection usable, batches, a query timeout
// (cancel), a wrong password (28P01): see the client's header.
TEST_F(PgReservoirdTest, JdbcThroughSessionModeWithScram) {
  if (const std::string why = jdbc_missing(); !why.empty()) GTEST_SKIP() << why;
  Reservoird r(pg(), "auth_type = scram-sha-256", standard_databases());
  ASSERT_TRUE(r.ready()) << r.log();
  auto [status, output] = run_jdbc(r, pg(), "session", "sess", "ApplicationName=rsv_jdbc_sess");
  EXPECT_EQ(status, 0) << output << r.log();
  EXPECT_NE(output.find("jdbc ok"), std::string::npos) << output;
}

// Transaction mode with prepareThreshold=0 (unnamed statements only, as PgBouncer documents for
// JDBC): the same checks, then 6 clients at once on the pool's 2 server connections, so that a
// client's consecutive transactions run on different ones; every answer must be right.
TEST_F(PgReservoirdTest, JdbcThroughTransactionModeWithPrepareThresholdZero) {
  if (const std::string why = jdbc_missing(); !why.empty()) GTEST_SKIP() << why;
  Reservoird r(pg(), "auth_type = scram-sha-256", standard_databases());
  ASSERT_TRUE(r.ready()) << r.log();
  const std::string app = "rsv_jdbc_tx_" + std::to_string(::getpid());
  const std::string parameters = "prepareThreshold=0&ApplicationName=" + app;
  auto [status, output] = run_jdbc(r, pg(), "transaction", "tx", parameters);
  EXPECT_EQ(status, 0) << output << r.log();
  EXPECT_NE(output.find("jdbc ok"), std::string::npos) << output;
  auto [cstatus, coutput] =
      run_jdbc(r, pg(), "concurrent", "tx", parameters, "threads=6,iterations=60");
  EXPECT_EQ(cstatus, 0) << coutput << r.log();
  EXPECT_NE(coutput.find("summary right=360 wrong=0 errors={}"), std::string::npos) << coutput;
  // Both server connections served JDBC clients (each carries the last one's application_name).
  Conn d = direct();
  EXPECT_EQ(await_server_sessions(d.get(), app, 2), 2);
}

// pgJDBC's default prepareThreshold (5) in transaction mode, where server connections are
// shared: from its 5th execution a PreparedStatement is a named server-side statement ("S_1").
// reservoird deallocates a client's named statements when its transaction ends
// (NamedStatementsLastForTheirTransactionInTransactionMode), so pgJDBC finds its statement gone
// (26000) on its next execution and prepares it again: every answer is right. First two clients
// taking turns on a pool of ONE server connection, where (before the deallocation) B's "S_1"
// collided with A's (42P05) and A's re-prepare with B's "S_2"; then 6 clients on 2 server
// connections, where answers came from another client's statement.
TEST_F(PgReservoirdTest, JdbcDefaultPrepareThresholdWorksInTransactionMode) {
  if (const std::string why = jdbc_missing(); !why.empty()) GTEST_SKIP() << why;
  Reservoird r(pg(), "auth_type = scram-sha-256", standard_databases());
  ASSERT_TRUE(r.ready()) << r.log();
  for (const std::string parameters : {"ApplicationName=rsv_jdbc_shared",
                                       "prepareThreshold=0&ApplicationName=rsv_jdbc_shared"}) {
    auto [status, output] = run_jdbc(r, pg(), "shared", "tx1", parameters);
    EXPECT_EQ(status, 0) << output << r.log();
    EXPECT_NE(output.find("transcript: A1=ok A2=ok A3=ok A4=ok A5=ok A6=ok B1=ok B2=ok B3=ok "
                          "B4=ok B5=ok B6=ok A7=ok\n"),
              std::string::npos)
        << parameters << "\n"
        << output;
  }
  // Inside explicit transactions pgJDBC cannot prepare again on its own: there the 26000
  // reaches the application (hence prepareThreshold=0 in docs/reservoird.md). What matters
  // here: no answer from another client's statement, and no other error.
  auto [cstatus, coutput] = run_jdbc(r, pg(), "concurrent", "tx", "ApplicationName=rsv_jdbc_def",
                                     "threads=6,iterations=60");
  // "summary right=N wrong=0 errors={}" or "... errors={26000=M}"; nothing else.
  const auto at = coutput.find("summary right=");
  ASSERT_NE(at, std::string::npos) << coutput << r.log();
  const std::string line = coutput.substr(at, coutput.find('\n', at) - at);
  int right = -1, gone = 0;
  const bool no_errors = std::sscanf(line.c_str(), "summary right=%d wrong=0 errors={}", &right) ==
                             1 &&
                         line.ends_with("errors={}");
  const bool only_gone =
      std::sscanf(line.c_str(), "summary right=%d wrong=0 errors={26000=%d}", &right, &gone) == 2 &&
      line.ends_with(" errors={26000=" + std::to_string(gone) + "}");
  ASSERT_TRUE(no_errors || only_gone) << line;
  EXPECT_EQ(right + gone, 360) << coutput;
  EXPECT_GT(right, 0) << coutput;
}

// pgbench: initialised directly, then -S and the default (TPC-B-like) script through reservoird
// in transaction mode, 8 clients on 2 server connections.
TEST_F(PgReservoirdTest, PgbenchThroughTransactionMode) {
  if (run_command("pgbench --version").first != 0) GTEST_SKIP() << "no pgbench";
  Reservoird r(pg(), "auth_type = scram-sha-256", standard_databases());
  ASSERT_TRUE(r.ready()) << r.log();
  const std::string env = "PGPASSWORD='" + pg().password + "' PGCONNECT_TIMEOUT=5 ";
  const std::string user = " -U " + pg().user + " ";
  auto [init_status, init_output] =
      run_command(env + "timeout 120 pgbench -i -q -s 1 -h " + pg().host + " -p " +
                  std::to_string(pg().port) + user + pg().database);
  ASSERT_EQ(init_status, 0) << init_output;
  for (const std::string& args : {std::string("-S"), std::string("")}) {
    auto [status, output] =
        run_command(env + "timeout 60 pgbench " + args + " -T 2 -c 8 -M simple -h 127.0.0.1 -p " +
                    std::to_string(r.port()) + user + "tx");
    EXPECT_EQ(status, 0) << args << "\n" << output << r.log();
    EXPECT_NE(output.find("number of failed transactions: 0 "), std::string::npos) << output;
    const auto at = output.find("tps = ");
    ASSERT_NE(at, std::string::npos) << output;
    EXPECT_GT(std::atof(output.c_str() + at + 6), 0.0) << output;
  }
  Conn d = direct();
  ok(d.get(),
     "DROP TABLE IF EXISTS pgbench_accounts, pgbench_branches, pgbench_history, pgbench_tellers");
}

// Threads of a reservoir::Pool (the project's own library, postgresql:// DSN) through reservoird,
// each with SQL of its own and parameters, many leases, a transaction every few: returns the
// number of failed or wrong answers and the first error.
std::pair<int, std::string> pool_workload(const std::string& dsn) {
  PoolOptions o;
  o.dsn = dsn;
  o.min = 0;
  o.max = 6;
  o.wait_timeout = 10s;
  auto pool = Pool::create(o);
  std::atomic<int> failures{0};
  std::mutex m;
  std::string first;
  std::vector<std::thread> threads;
  for (int t = 0; t < 6; ++t) {
    threads.emplace_back([&, t] {
      const std::string sql = "SELECT $1::int + " + std::to_string(t);
      for (int i = 0; i < 60; ++i) {
        try {
          Lease c = pool->acquire();
          if (i % 10 == 9) {
            c->begin();
            if (c->query(sql, i)[0][0].as<int>() != i + t) ++failures;
            if (c->query("SELECT $1::text || $2::text", "a", std::to_string(t))[0][0]
                    .as<std::string>() != "a" + std::to_string(t))
              ++failures;
            c->commit();
          } else if (c->query(sql, i)[0][0].as<int>() != i + t) {
            std::lock_guard lock(m);
            if (first.empty()) first = "wrong answer from '" + sql + "'";
            ++failures;
          }
        } catch (const std::exception& e) {
          std::lock_guard lock(m);
          if (first.empty()) first = e.what();
          ++failures;
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  pool->close(true);
  return {failures.load(), first};
}

// Our PostgreSQL driver names cached prepared statements rsv_1, rsv_2, ... per connection; in
// transaction mode a client's next transaction may run on another server connection, where
// that name is unknown or is another client's statement. With stmt_cache_size=0 (unnamed
// statements) the library works through transaction pooling.
TEST_F(PgReservoirdTest, ReservoirPoolThroughTransactionModeWithStmtCacheOff) {
  Reservoird r(pg(), "auth_type = scram-sha-256", standard_databases());
  ASSERT_TRUE(r.ready()) << r.log();
  const std::string base = "postgresql://" + pg().user + ":" + pg().password +
                           "@127.0.0.1:" + std::to_string(r.port()) + "/tx?connect_timeout=5";
  auto [failures, first] = pool_workload(base + "&stmt_cache_size=0");
  EXPECT_EQ(failures, 0) << first << r.log();
  // (With the default stmt_cache_size the same workload fails: "prepared statement "rsv_1"
  // already exists" (42P05), or runs another client's rsv_1. See docs/reservoird.md.)
}

// track_extra_parameters for application_name: each client sees, and the server reports, its
// own application_name, though the server connections were opened for the pool's first client.
TEST_F(PgReservoirdTest, ApplicationNameIsEachClientsOwn) {
  Reservoird r(pg(), "auth_type = trust",
               dbline("sess1", "pool_size=1 pool_mode=session") +
                   dbline("tx1", "pool_size=1 pool_mode=transaction"));
  ASSERT_TRUE(r.ready()) << r.log();
  Conn d = direct();
  auto app_of = [&](PGconn* c) {
    // What the server says, for this client's server session (pg_stat_activity agrees).
    const std::string mine = one(c, "SELECT current_setting('application_name')");
    const std::string seen =
        one(c, "SELECT application_name FROM pg_stat_activity WHERE pid = pg_backend_pid()");
    EXPECT_EQ(mine, seen);
    const char* told = PQparameterStatus(c, "application_name");
    EXPECT_EQ(std::string(told != nullptr ? told : "(none)"), mine) << "ParameterStatus";
    return mine;
  };
  for (const char* db : {"sess1", "tx1"}) {
    SCOPED_TRACE(db);
    {
      Conn first = open(r, db, "application_name=rsv_first");
      EXPECT_EQ(app_of(first.get()), "rsv_first");
    }
    std::this_thread::sleep_for(100ms);  // session mode: the connection is reset, then back
    {
      Conn second = open(r, db, "application_name=rsv_second");
      EXPECT_EQ(app_of(second.get()), "rsv_second");
      ok(second.get(), "SET application_name = 'rsv_changed'");  // the client's own SET sticks
      EXPECT_EQ(app_of(second.get()), "rsv_changed");
    }
    std::this_thread::sleep_for(100ms);
    Conn unnamed = open(r, db);
    EXPECT_EQ(app_of(unnamed.get()), "");
  }
  // Transaction mode: two clients taking turns on the one server connection.
  Conn a = open(r, "tx1", "application_name=rsv_a");
  Conn b = open(r, "tx1", "application_name=rsv_b");
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(app_of(a.get()), "rsv_a");
    EXPECT_EQ(app_of(b.get()), "rsv_b");
  }
}

}  // namespace
}  // namespace reservoir

#else
TEST(PgReservoirdTest, NeedsTheReservoirdBinary) { GTEST_SKIP() << "reservoird is not built"; }
#endif
