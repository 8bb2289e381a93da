// tests/support/fake_driver.cpp: the fault-injecting fake driver.
#include "support/fake_driver.hpp"

#include <random>
#include <thread>

#include "reservoir/error.hpp"

namespace reservoir::testing {

std::unique_ptr<Connection> FakeDriver::connect(const Dsn& dsn, std::chrono::milliseconds timeout) {
  attempts_.fetch_add(1);
  in_connect_.fetch_add(1);
  struct Leave {
    std::atomic<int>& n;
    ~Leave() { n.fetch_sub(1); }
  } leave{in_connect_};

  const auto deadline = std::chrono::steady_clock::now() +
                        (timeout.count() > 0 ? timeout : std::chrono::milliseconds(60'000));
  {
    std::unique_lock lk(hold_mutex_);
    if (!hold_cv_.wait_until(lk, deadline, [&] { return !held_; }))
      throw Error(ErrorCode::connect_failed, "fake: connect timed out (held)");
  }
  if (auto d = delay_ms_.load(); d > 0) std::this_thread::sleep_for(std::chrono::milliseconds(d));

  bool fail = fail_all_.load();
  int n = fail_next_.load();
  while (!fail && n > 0) {
    if (fail_next_.compare_exchange_weak(n, n - 1)) fail = true;
  }
  if (!fail && failure_rate_.load() > 0) {
    thread_local std::minstd_rand rng(std::random_device{}());
    fail = std::uniform_real_distribution<double>(0, 1)(rng) < failure_rate_.load();
  }
  if (fail) {
    if (fail_auth_.load())
      throw Error(ErrorCode::auth_failed, "fake: password authentication failed for user \"app\"",
                  ErrorDetail{"28P01", 0});
    throw Error(ErrorCode::connect_failed, "fake: could not connect to server: Connection refused",
                ErrorDetail{"08001", 0});
  }
  connects_.fetch_add(1);
  auto conn = std::make_unique<FakeConnection>(shared_from_this(), next_id_.fetch_add(1));
  conn->user_ = dsn.user;
  return conn;
}

void FakeDriver::hold_connects() {
  std::lock_guard lk(hold_mutex_);
  held_ = true;
}

void FakeDriver::release_connects() {
  {
    std::lock_guard lk(hold_mutex_);
    held_ = false;
  }
  hold_cv_.notify_all();
}

FakeConnection::FakeConnection(std::shared_ptr<FakeDriver> driver, std::uint64_t id)
    : driver_(std::move(driver)), id_(id) {
  driver_->live_.fetch_add(1);
}

FakeConnection::~FakeConnection() { driver_->live_.fetch_sub(1); }

bool FakeConnection::broken() const noexcept {
  return broken_ || id_ < driver_->broken_before_.load();
}

std::uint64_t FakeConnection::execute_params(std::string_view sql, std::span<const Value>) {
  if (broken()) throw Error(ErrorCode::connection_lost, "fake: server closed the connection");
  if (sql == "BEGIN") {
    begin();
  } else if (sql == "COMMIT") {
    commit();
  } else if (sql == "ROLLBACK") {
    rollback();
  } else if (sql == "FAIL") {
    throw Error(ErrorCode::query_failed, "fake: syntax error", ErrorDetail{"42601", 0});
  } else if (sql.starts_with("SET ")) {
    session_var_ = std::string(sql.substr(4));
  } else if (sql == "BREAK") {
    broken_ = true;
    throw Error(ErrorCode::connection_lost, "fake: server closed the connection");
  }
  return 0;
}

ResultSet FakeConnection::query_params(std::string_view sql, std::span<const Value> params) {
  if (sql == "SHOW") {
    if (broken()) throw Error(ErrorCode::connection_lost, "fake: server closed the connection");
    return ResultSet({"setting"}, {Row({Value(session_var_)})});
  }
  execute_params(sql == "SELECT ID" ? std::string_view("") : sql, params);
  return ResultSet({"id"}, {Row({Value(static_cast<std::int64_t>(id_))})});
}

void FakeConnection::begin() { in_tx_ = true; }
void FakeConnection::commit() { in_tx_ = false; }

void FakeConnection::rollback() {
  driver_->rollbacks_.fetch_add(1);
  if (driver_->fail_rollback_.load())
    throw Error(ErrorCode::connection_lost, "fake: rollback failed");
  in_tx_ = false;
}

void FakeConnection::ping(std::chrono::milliseconds) {
  driver_->pings_.fetch_add(1);
  if (driver_->fail_pings_.load()) broken_ = true;
  if (broken()) throw Error(ErrorCode::connection_lost, "fake: ping failed");
}

void FakeConnection::reset() {
  driver_->resets_.fetch_add(1);
  if (driver_->fail_resets_.load()) throw Error(ErrorCode::connection_lost, "fake: reset failed");
  rollback();
  session_var_.clear();
}

bool eventually(const std::function<bool()>& pred, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= deadline) return pred();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  return true;
}

}  // namespace reservoir::testing
