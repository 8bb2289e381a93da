// src/core/stats.cpp: PoolStats as one line of key=value pairs, for logs and the demo.
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
  if (!last_connect_error.empty()) out += " last_connect_error=" + quote(last_connect_error);
  return out;
}

}  // namespace reservoir
