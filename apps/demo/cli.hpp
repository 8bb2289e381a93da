// apps/demo/cli.hpp: the demo's command line, parsed into DemoOptions, and its --help text.
#pragma once

#include <chrono>
#include <cstdint>
#include <span>
#include <stdexcept>
#include <string>
#include <string_view>

#include "reservoir/options.hpp"

namespace demo {

// What the demo runs. Defaults are the connection-pool lab's: a pool of min 2, max 5,
// increment 1 and two threads.
struct DemoOptions {
  reservoir::PoolOptions pool;  // dsn, min, max, increment, get_mode, wait_timeout
  std::uint32_t threads = 2;
  std::chrono::milliseconds hold{100};  // how long each thread keeps its connection
  bool help = false;
};

// A bad command line: unknown option, missing value, malformed or out-of-range number.
class UsageError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Parses the arguments after the program name ("--opt value" or "--opt=value"). Sizing is not
// cross-checked here (min <= max etc.): Pool::create does that and names the bad field.
// Throws UsageError.
DemoOptions parse_command_line(std::span<const std::string_view> args);

// The default DSN: the SQLite file reservoir_demo.db in the system's temporary directory.
// Throws std::filesystem::filesystem_error when there is no usable temporary directory.
std::string default_dsn();

// The --help text.
std::string usage(std::string_view program);

}  // namespace demo
