// src/core/stats.cpp: PoolStats as one line of key=value pairs, for logs and the demo; names of
// close reasons.
#include "reservoir/stats.hpp"

#include <string>

namespace reservoir {

namespace {

// Connect errors are free text (PostgreSQL's have DETAIL lines); quoting and escaping keep the
// line one line and its fields splittable on spaces.
std::string quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        out += c;
    }
  }
  out += '"';
  return out;
}

}  // namespace

// These names are metric label values (reason="...") and log keys: keep them stable.
const char* to_string(CloseReason reason) noexcept {
  switch (reason) {
    case CloseReason::idle_timeout:
      return "idle_timeout";
    case CloseReason::lifetime:
      return "lifetime";
    case CloseReason::broken:
      return "broken";
    case CloseReason::validation_failed:
      return "validation_failed";
    case CloseReason::reset_failed:
      return "reset_failed";
    case CloseReason::shrink:
      return "shrink";
    case CloseReason::dropped:
      return "dropped";
    case CloseReason::session_callback:
      return "session_callback";
    case CloseReason::pool_closed:
      return "pool_closed";
  }
  return "unknown";
}

// The keys up to drops are always there, in a fixed order. The newer fields appear only when
// nonzero (or, for latencies, when something was measured; for classes, when there are any), so
// an idle pool's line stays short. last_connect_error, free text, stays last.
std::string PoolStats::to_string() const {
  std::string out;
  out.reserve(256);
  auto add = [&out](const char* key, std::uint64_t value) {
    if (!out.empty()) out += ' ';
    out += key;
    out += '=';
    out += std::to_string(value);
  };
  add("opened", opened);
  add("busy", busy);
  add("idle", idle);
  add("connecting", connecting);
  add("waiting", waiting);
  add("max_waiting", max_waiting);
  add("acquires", acquires);
  add("hits", hits);
  add("misses", misses);
  add("waits", waits);
  add("timeouts", timeouts);
  add("exhausted", exhausted);
  add("creates", creates);
  add("create_failures", create_failures);
  add("drops", drops);
  if (ping_failures != 0) add("ping_failures", ping_failures);
  if (leaks != 0) add("leaks", leaks);
  if (cancelled != 0) add("cancelled", cancelled);

  // closed=idle_timeout:3,broken:1
  bool first = true;
  for (std::size_t r = 0; r < kCloseReasons; ++r) {
    if (closed[r] == 0) continue;
    out += first ? " closed=" : ",";
    first = false;
    out += reservoir::to_string(static_cast<CloseReason>(r));
    out += ':';
    out += std::to_string(closed[r]);
  }

  // wait_us=p50:12,p99:340,max:900
  auto add_latency = [&out](const char* key, const LatencySummary& l) {
    if (l.count == 0) return;
    out += ' ';
    out += key;
    out += "=p50:" + std::to_string(l.p50_us) + ",p99:" + std::to_string(l.p99_us) +
           ",max:" + std::to_string(l.max_us);
  };
  add_latency("wait_us", wait_time);
  add_latency("hold_us", hold_time);

  // class["reporting"]=requests:5,hits:3,misses:2,waits:1 (names are free text: quoted)
  for (const auto& [name, c] : classes) {
    out += " class[" + quote(name) + "]=requests:" + std::to_string(c.requests) +
           ",hits:" + std::to_string(c.hits) + ",misses:" + std::to_string(c.misses) +
           ",waits:" + std::to_string(c.waits);
  }

  if (!last_connect_error.empty()) out += " last_connect_error=" + quote(last_connect_error);
  return out;
}

}  // namespace reservoir
