// apps/demo/cli.cpp: command-line parsing for reservoir_demo.
#include "cli.hpp"

#include <charconv>
#include <filesystem>
#include <limits>
#include <optional>
#include <system_error>

#include "reservoir/error.hpp"

namespace demo {
namespace {

// Long enough for any demo; short enough that now + limit cannot overflow a clock.
constexpr std::uint64_t kMaxMillis = 24ULL * 60 * 60 * 1000;
// Each thread is a real OS thread; this keeps a typo from starting a million.
constexpr std::uint64_t kMaxThreads = 1000;

std::uint64_t parse_number(std::string_view option, std::string_view text, std::uint64_t lo,
                           std::uint64_t hi) {
  std::uint64_t value = 0;
  const char* const end = text.data() + text.size();
  const auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec == std::errc::invalid_argument || ptr != end) {
    throw UsageError("option " + std::string(option) + " needs a whole number, got '" +
                     std::string(text) + "'");
  }
  if (ec == std::errc::result_out_of_range || value < lo || value > hi) {
    throw UsageError("option " + std::string(option) + " must be between " + std::to_string(lo) +
                     " and " + std::to_string(hi) + ", got '" + std::string(text) + "'");
  }
  return value;
}

std::uint32_t parse_count(std::string_view option, std::string_view text) {
  return static_cast<std::uint32_t>(
      parse_number(option, text, 0, std::numeric_limits<std::uint32_t>::max()));
}

std::chrono::milliseconds parse_millis(std::string_view option, std::string_view text) {
  return std::chrono::milliseconds(
      static_cast<std::int64_t>(parse_number(option, text, 0, kMaxMillis)));
}

// Percent-encodes what Dsn::parse would otherwise read as an escape, a parameter or a fragment.
std::string encode_path(std::string_view path) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (const char c : path) {
    if (c == '%' || c == '?' || c == '#' || c == '&' || c == ' ') {
      const auto byte = static_cast<unsigned char>(c);
      out += '%';
      out += kHex[byte >> 4];
      out += kHex[byte & 0xF];
    } else {
      out += c;
    }
  }
  return out;
}

}  // namespace

DemoOptions parse_command_line(std::span<const std::string_view> args) {
  DemoOptions o;
  o.pool.name = "reservoir_demo";
  o.pool.min = 2;
  o.pool.max = 5;
  o.pool.increment = 1;
  // Show a bad DSN or an unreachable database at once, not as timeouts in every thread.
  o.pool.fail_fast = true;

  for (std::size_t i = 0; i < args.size(); ++i) {
    std::string_view option = args[i];
    std::optional<std::string_view> inline_value;
    if (const auto eq = option.find('='); option.starts_with("--") && eq != option.npos) {
      inline_value = option.substr(eq + 1);
      option = option.substr(0, eq);
    }
    if (option == "--help" || option == "-h") {
      if (inline_value) throw UsageError("option --help takes no value");
      o.help = true;
      continue;
    }
    if (!option.starts_with("-")) {
      throw UsageError("unexpected argument '" + std::string(option) + "'");
    }
    const auto value = [&]() -> std::string_view {
      if (inline_value) return *inline_value;
      if (i + 1 >= args.size())
        throw UsageError("option " + std::string(option) + " needs a value");
      return args[++i];
    };
    if (option == "--dsn") {
      o.pool.dsn = value();
      if (o.pool.dsn.empty()) throw UsageError("option --dsn needs a non-empty value");
    } else if (option == "--threads") {
      o.threads = static_cast<std::uint32_t>(parse_number(option, value(), 1, kMaxThreads));
    } else if (option == "--min") {
      o.pool.min = parse_count(option, value());
    } else if (option == "--max") {
      o.pool.max = parse_count(option, value());
    } else if (option == "--increment") {
      o.pool.increment = parse_count(option, value());
    } else if (option == "--get-mode") {
      const std::string_view text = value();
      try {
        o.pool.get_mode = reservoir::parse_get_mode(text);
      } catch (const reservoir::Error& e) {
        throw UsageError("option --get-mode: " + std::string(e.what()));
      }
    } else if (option == "--wait-timeout") {
      o.pool.wait_timeout = parse_millis(option, value());
    } else if (option == "--hold-ms") {
      o.hold = parse_millis(option, value());
    } else {
      throw UsageError("unknown option '" + std::string(option) + "'");
    }
  }
  if (o.pool.dsn.empty() && !o.help) o.pool.dsn = default_dsn();
  return o;
}

std::string default_dsn() {
  const std::filesystem::path file =
      std::filesystem::absolute(std::filesystem::temp_directory_path() / "reservoir_demo.db");
  // An absolute path starts with '/', giving the sqlite:///abs/path form.
  return "sqlite://" + encode_path(file.generic_string());
}

std::string usage(std::string_view program) {
  std::string dsn;
  try {
    dsn = default_dsn();
  } catch (const std::exception&) {
    dsn = "sqlite://<temp dir>/reservoir_demo.db";
  }
  const std::string p(program);
  return "Usage: " + p + R"( [options]

Threads share a small connection pool: each acquires a connection, fetches 4 values
from a database sequence, keeps the connection --hold-ms, and returns it. Then the
pool's statistics are printed. With no options it runs on an SQLite file in the
system's temporary directory.

Options:
  --dsn DSN           database to use (default: )" +
         dsn + R"()
                      schemes with sequence SQL: sqlite, postgresql, mariadb
  --threads N         threads, 1-1000 (default: 2)
  --min N             connections the pool keeps open (default: 2)
  --max N             most connections open at once (default: 5)
  --increment N       connections opened when the pool grows (default: 1)
  --get-mode MODE     what acquire does at max: wait, no_wait, force_get,
                      timed_wait (default: timed_wait)
  --wait-timeout MS   timed_wait's limit in milliseconds (default: 30000)
  --hold-ms MS        how long each thread keeps its connection (default: 100)
  -h, --help          show this text

Exit status:
  0  the demo ran as configured; threads refused with pool_timeout or
     pool_exhausted (the point of a timed_wait or no_wait run) do not change this
  1  the pool or the sequence could not be set up, or a thread failed otherwise
  2  bad options: unknown option, bad number, invalid pool sizing or DSN

Example, more threads than connections and a short wait (some threads time out):
  )" + p +
         R"( --threads 8 --max 2 --get-mode timed_wait --wait-timeout 200 --hold-ms 500
)";
}

}  // namespace demo
