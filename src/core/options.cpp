// src/core/options.cpp: get mode names, and the checks that turn bad PoolOptions and
// PoolSettings into an invalid_argument naming the field (see options_check.hpp).
#include <string>
#include <string_view>

#include "core/options_check.hpp"
#include "reservoir/error.hpp"

namespace reservoir {

const char* to_string(Purity purity) noexcept {
  return purity == Purity::self ? "self" : "new";
}

const char* to_string(LogLevel level) noexcept {
  switch (level) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warning: return "warning";
    case LogLevel::error: return "error";
  }
  return "?";
}

const char* to_string(GetMode mode) noexcept {
  switch (mode) {
    case GetMode::wait:
      return "wait";
    case GetMode::no_wait:
      return "no_wait";
    case GetMode::force_get:
      return "force_get";
    case GetMode::timed_wait:
      return "timed_wait";
  }
  return "unknown";
}

GetMode parse_get_mode(std::string_view text) {
  std::string key(text);
  for (char& c : key) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  if (key == "wait") return GetMode::wait;
  if (key == "no_wait" || key == "nowait") return GetMode::no_wait;
  if (key == "force_get" || key == "forceget") return GetMode::force_get;
  if (key == "timed_wait" || key == "timedwait") return GetMode::timed_wait;
  throw Error(ErrorCode::invalid_argument,
              "get_mode: '" + std::string(text) +
                  "' is not one of wait, no_wait, force_get, timed_wait (also accepted: nowait, "
                  "forceget, timedwait; any case)");
}

namespace core {

namespace {

[[noreturn]] void fail(const std::string& what) { throw Error(ErrorCode::invalid_argument, what); }

void check_max(std::uint32_t max) {
  if (max < 1) fail("max: must be at least 1");
}

void check_min_max(std::uint32_t min, std::uint32_t max) {
  if (min > max) {
    fail("min (" + std::to_string(min) + ") is greater than max (" + std::to_string(max) + ")");
  }
}

void check_increment(std::uint32_t increment) {
  if (increment < 1) fail("increment: must be at least 1");
}

void check_get_mode(GetMode mode) {
  // Guards against a GetMode made by casting a number, e.g. read from a config file unchecked.
  if (static_cast<unsigned>(mode) > static_cast<unsigned>(GetMode::timed_wait)) {
    fail("get_mode: unknown value " + std::to_string(static_cast<unsigned>(mode)));
  }
}

void check_duration(const char* field, std::chrono::milliseconds d) {
  if (d.count() < 0) {
    fail(std::string(field) + ": must not be negative (got " + std::to_string(d.count()) + " ms)");
  }
}

}  // namespace

Dsn check_options(const PoolOptions& o) {
  Dsn dsn = Dsn::parse(o.dsn);
  check_max(o.max);
  check_min_max(o.min, o.max);
  check_increment(o.increment);
  check_get_mode(o.get_mode);
  check_duration("wait_timeout", o.wait_timeout);
  check_duration("connect_timeout", o.connect_timeout);
  // ping_interval may be negative: that means never.
  check_duration("ping_timeout", o.ping_timeout);
  check_duration("idle_timeout", o.idle_timeout);
  check_duration("max_lifetime", o.max_lifetime);
  check_duration("lifetime_jitter", o.lifetime_jitter);
  check_duration("leak_threshold", o.leak_threshold);
  if (o.maintenance_interval.count() <= 0) fail("maintenance_interval: must be positive");
  if (o.max_connecting < 1) fail("max_connecting: must be at least 1");
  if (o.backoff_initial.count() <= 0) fail("backoff_initial: must be positive");
  if (o.backoff_max < o.backoff_initial) fail("backoff_max: must be at least backoff_initial");
  if (o.max_lifetime.count() > 0 && o.lifetime_jitter >= o.max_lifetime)
    fail("lifetime_jitter: must be less than max_lifetime");
  resolve_driver(o, dsn);
  return dsn;
}

void check_settings(const PoolSettings& s, std::uint32_t current_min, std::uint32_t current_max) {
  if (s.max) check_max(*s.max);
  if (s.min || s.max) check_min_max(s.min.value_or(current_min), s.max.value_or(current_max));
  if (s.increment) check_increment(*s.increment);
  if (s.get_mode) check_get_mode(*s.get_mode);
  if (s.wait_timeout) check_duration("wait_timeout", *s.wait_timeout);
  if (s.idle_timeout) check_duration("idle_timeout", *s.idle_timeout);
  if (s.max_lifetime) check_duration("max_lifetime", *s.max_lifetime);
}

std::shared_ptr<Driver> resolve_driver(const PoolOptions& o, const Dsn& dsn) {
  // An explicit driver wins whatever the scheme: that is how tests put a fake under "fake://".
  if (o.driver) return o.driver;
  if (auto driver = find_driver(dsn.scheme)) return driver;
  std::string available;
  for (const std::string& scheme : registered_schemes()) {
    available += available.empty() ? "" : ", ";
    available += scheme;
  }
  fail("dsn: no driver for scheme '" + dsn.scheme +
       "' (available: " + (available.empty() ? std::string("none") : available) + ")");
}

}  // namespace core

}  // namespace reservoir
