// src/core/prometheus.cpp: PoolStats in the Prometheus text exposition format 0.0.4. The metric
// names are an interface (dashboards and alerts use them): docs/observability.md lists them.
#include "core/prometheus.hpp"

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <utility>

namespace reservoir::core {

namespace {

// A label value as the format requires: backslash, double quote and line feed escaped.
void append_escaped(std::string& out, std::string_view value) {
  for (char c : value) {
    switch (c) {
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += "\\\"";
        break;
      case '\n':
        out += "\\n";
        break;
      default:
        out += c;
    }
  }
}

// Microseconds as decimal seconds, exactly ("0.000123", "1.5", "0"): no floating point, so no
// "1e-06" or rounding noise in the output.
std::string seconds_from_us(std::uint64_t us) {
  std::string out = std::to_string(us / 1000000);
  std::uint64_t frac = us % 1000000;
  if (frac == 0) return out;
  std::string digits = std::to_string(frac);
  digits.insert(0, 6 - digits.size(), '0');
  digits.erase(digits.find_last_not_of('0') + 1);
  return out + '.' + digits;
}

class Writer {
 public:
  explicit Writer(std::string_view pool_name) {
    pool_label_ = "pool=\"";
    append_escaped(pool_label_, pool_name);
    pool_label_ += '"';
    out_.reserve(8192);
  }

  // # HELP and # TYPE of a family. help must not hold a backslash or a line feed.
  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_ += "# HELP ";
    out_ += name;
    out_ += ' ';
    out_ += help;
    out_ += "\n# TYPE ";
    out_ += name;
    out_ += ' ';
    out_ += type;
    out_ += '\n';
  }

  // name{pool="...",label="value"} value. label empty: the pool label only.
  void sample(std::string_view name, std::string_view value, std::string_view label = {},
              std::string_view label_value = {}) {
    out_ += name;
    out_ += '{';
    out_ += pool_label_;
    if (!label.empty()) {
      out_ += ',';
      out_ += label;
      out_ += "=\"";
      append_escaped(out_, label_value);
      out_ += '"';
    }
    out_ += "} ";
    out_ += value;
    out_ += '\n';
  }
  void sample(std::string_view name, std::uint64_t value, std::string_view label = {},
              std::string_view label_value = {}) {
    sample(name, std::to_string(value), label, label_value);
  }

  // A family with one sample.
  void single(std::string_view name, std::string_view type, std::string_view help,
              std::uint64_t value) {
    family(name, type, help);
    sample(name, value);
  }

  // A summary (quantiles 0.5 and 0.99, _count) plus a gauge <base>_max_seconds. The quantiles
  // are over the pool's whole life, not a sliding window. No quantile lines before the first
  // sample (the format would want NaN there). No _sum: the pool does not keep one.
  void latency(std::string_view base, std::string_view help, std::string_view max_help,
               const LatencySummary& l) {
    const std::string name = std::string(base) + "_seconds";
    family(name, "summary", help);
    if (l.count != 0) {
      sample(name, seconds_from_us(l.p50_us), "quantile", "0.5");
      sample(name, seconds_from_us(l.p99_us), "quantile", "0.99");
    }
    sample(name + "_count", l.count);
    const std::string max_name = std::string(base) + "_max_seconds";
    family(max_name, "gauge", max_help);
    sample(max_name, seconds_from_us(l.max_us));
  }

  // A per-class counter: one sample per connection class, labelled cclass="<class>".
  template <typename Field>
  void per_class(std::string_view name, std::string_view help,
                 const std::map<std::string, ClassStats>& classes, Field field) {
    family(name, "counter", help);
    for (const auto& [cclass, c] : classes) sample(name, c.*field, "cclass", cclass);
  }

  std::string take() { return std::move(out_); }

 private:
  std::string pool_label_;
  std::string out_;
};

}  // namespace

std::string to_prometheus(const PoolStats& st, std::string_view pool_name) {
  Writer w(pool_name);

  w.family("reservoir_pool_connections", "gauge",
           "Connections by state: busy (leased out), idle (ready in the pool), connecting "
           "(attempts in flight).");
  w.sample("reservoir_pool_connections", st.busy, "state", "busy");
  w.sample("reservoir_pool_connections", st.idle, "state", "idle");
  w.sample("reservoir_pool_connections", st.connecting, "state", "connecting");
  w.single("reservoir_pool_opened", "gauge",
           "Live connections (idle + busy), force_get extras included.", st.opened);
  w.single("reservoir_pool_waiting", "gauge", "Acquirers waiting for a connection now.",
           st.waiting);
  w.single("reservoir_pool_max_waiting", "gauge", "The most acquirers ever waiting at once.",
           st.max_waiting);

  w.single("reservoir_pool_acquires_total", "counter", "acquire() calls.", st.acquires);
  w.single("reservoir_pool_hits_total", "counter", "Acquires served an already-open connection.",
           st.hits);
  w.single("reservoir_pool_misses_total", "counter", "Acquires that had to open a connection.",
           st.misses);
  w.single("reservoir_pool_waits_total", "counter", "Acquires that had to wait for a connection.",
           st.waits);
  w.single("reservoir_pool_timeouts_total", "counter", "Acquires that gave up with pool_timeout.",
           st.timeouts);
  w.single("reservoir_pool_exhausted_total", "counter",
           "Acquires refused with pool_exhausted (no_wait).", st.exhausted);
  w.single("reservoir_pool_cancelled_total", "counter",
           "Acquires given up by the caller before they ended (async cancellation).", st.cancelled);
  w.single("reservoir_pool_connections_created_total", "counter", "Connections opened.",
           st.creates);
  w.single("reservoir_pool_connect_failures_total", "counter", "Connection attempts that failed.",
           st.create_failures);
  w.single("reservoir_pool_drops_total", "counter",
           "Connections closed by the pool before pool close (broken, reset failed, over max, "
           "Lease::drop()).",
           st.drops);
  w.single("reservoir_pool_ping_failures_total", "counter", "Pings before hand-out that failed.",
           st.ping_failures);
  w.single("reservoir_pool_leaks_total", "counter", "Leases reported as held past leak_threshold.",
           st.leaks);

  w.family("reservoir_pool_connections_closed_total", "counter", "Connections closed, by reason.");
  for (std::size_t r = 0; r < kCloseReasons; ++r) {
    w.sample("reservoir_pool_connections_closed_total", st.closed[r], "reason",
             to_string(static_cast<CloseReason>(r)));
  }

  w.latency("reservoir_pool_wait", "Time acquire() took, over all acquires since the pool began.",
            "The longest acquire() since the pool began.", st.wait_time);
  w.latency("reservoir_pool_hold",
            "Time from acquire to release, over all leases since the "
            "pool began.",
            "The longest lease since the pool began.", st.hold_time);

  w.per_class("reservoir_pool_class_requests_total", "Acquires naming the connection class.",
              st.classes, &ClassStats::requests);
  w.per_class("reservoir_pool_class_hits_total",
              "Acquires served a session last used by the connection class.", st.classes,
              &ClassStats::hits);
  w.per_class("reservoir_pool_class_misses_total",
              "Acquires of the class served another class's session (reset) or a new one.",
              st.classes, &ClassStats::misses);
  w.per_class("reservoir_pool_class_waits_total", "Acquires of the class that had to wait.",
              st.classes, &ClassStats::waits);
  return w.take();
}

}  // namespace reservoir::core
