// tests/support/fake_driver.hpp: a driver with no database behind it, for engine tests. It
// injects connect failures, slow or held connects, broken connections and failing rollbacks,
// and counts live connections so that tests can prove the pool's accounting exact.
//
//   auto fake = std::make_shared<reservoir::testing::FakeDriver>();
//   reservoir::PoolOptions o; o.dsn = "fake://db"; o.driver = fake;
//   fake->fail_next_connects(2);
//   ...
//   EXPECT_EQ(pool->opened(), fake->live());
//
// SQL understood by FakeConnection: BEGIN, COMMIT, ROLLBACK, FAIL (query_failed), BREAK (marks
// the connection broken and throws connection_lost), SELECT ID (one row: the connection's id),
// SET <anything> (session state that reset() clears), SHOW (one row: what SET set).
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <functional>
#include <mutex>
#include <string>

#include "reservoir/driver.hpp"

namespace reservoir::testing {

class FakeDriver : public Driver, public std::enable_shared_from_this<FakeDriver> {
 public:
  std::string_view scheme() const noexcept override { return "fake"; }
  std::unique_ptr<Connection> connect(const Dsn& dsn, std::chrono::milliseconds timeout) override;

  // --- Fault injection (thread-safe) ---
  void fail_next_connects(int n) { fail_next_.store(n); }
  void fail_all_connects(bool on) { fail_all_.store(on); }
  void fail_with_auth(bool on) { fail_auth_.store(on); }  // failures are auth_failed
  void set_connect_delay(std::chrono::milliseconds d) { delay_ms_.store(d.count()); }
  // While held, connect() blocks (up to its timeout) until release_connects().
  void hold_connects();
  void release_connects();
  // Every connection open now reports broken() from now on.
  void break_all() { broken_before_.store(next_id_.load()); }
  // rollback() throws on every connection from now on (or stops doing so).
  void fail_rollbacks(bool on) { fail_rollback_.store(on); }
  // ping() fails (and marks the connection broken) on every connection from now on.
  void fail_pings(bool on) { fail_pings_.store(on); }
  // reset() throws on every connection from now on.
  void fail_resets(bool on) { fail_resets_.store(on); }
  // Randomly fail this fraction (0..1) of connects (for stress tests).
  void set_connect_failure_rate(double r) { failure_rate_.store(r); }

  // --- Observation ---
  int live() const { return live_.load(); }            // connections not yet destroyed
  int connects() const { return connects_.load(); }    // successful connects
  int attempts() const { return attempts_.load(); }    // connect() calls
  int in_connect() const { return in_connect_.load(); }  // connect() calls running now
  int rollbacks() const { return rollbacks_.load(); }
  int pings() const { return pings_.load(); }
  int resets() const { return resets_.load(); }

 private:
  friend class FakeConnection;
  std::atomic<int> fail_next_{0};
  std::atomic<bool> fail_all_{false};
  std::atomic<bool> fail_auth_{false};
  std::atomic<bool> fail_rollback_{false};
  std::atomic<bool> fail_pings_{false};
  std::atomic<bool> fail_resets_{false};
  std::atomic<double> failure_rate_{0.0};
  std::atomic<std::int64_t> delay_ms_{0};
  std::atomic<std::uint64_t> next_id_{1};
  std::atomic<std::uint64_t> broken_before_{0};
  std::atomic<int> live_{0}, connects_{0}, attempts_{0}, in_connect_{0}, rollbacks_{0}, pings_{0},
      resets_{0};
  std::mutex hold_mutex_;
  std::condition_variable hold_cv_;
  bool held_ = false;  // guarded by hold_mutex_
};

class FakeConnection : public Connection {
 public:
  FakeConnection(std::shared_ptr<FakeDriver> driver, std::uint64_t id);
  ~FakeConnection() override;

  std::uint64_t execute_params(std::string_view sql, std::span<const Value> params) override;
  ResultSet query_params(std::string_view sql, std::span<const Value> params) override;
  void begin() override;
  void commit() override;
  void rollback() override;
  bool in_transaction() const noexcept override { return in_tx_; }
  bool broken() const noexcept override;
  void ping(std::chrono::milliseconds timeout) override;
  void reset() override;
  void* native_handle() noexcept override { return this; }
  std::string_view driver_name() const noexcept override { return "fake"; }

  std::uint64_t id() const noexcept { return id_; }
  // The user the connection was opened as (from the DSN the pool passed).
  const std::string& user() const noexcept { return user_; }
  const std::string& session_var() const noexcept { return session_var_; }

 private:
  friend class FakeDriver;
  std::string user_;
  std::string session_var_;
  std::shared_ptr<FakeDriver> driver_;
  std::uint64_t id_;
  bool in_tx_ = false;
  bool broken_ = false;
};

// Polls pred every millisecond until it holds or timeout passes; returns its last value. For
// conditions on other threads' progress that have no event to wait on.
bool eventually(const std::function<bool()>& pred,
                std::chrono::milliseconds timeout = std::chrono::seconds(10));

}  // namespace reservoir::testing
