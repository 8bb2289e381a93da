// reservoir/log.hpp: the log hook. A pool reports what an operator should know (connect
// failures, leaked leases, connections closed and why) through one function of the
// application's. Messages never contain a password.
//
//   o.log = [](reservoir::LogLevel level, std::string_view message) {
//     if (level >= reservoir::LogLevel::warning) std::cerr << message << "\n";
//   };
#pragma once

#include <cstdint>
#include <functional>
#include <string_view>

namespace reservoir {

enum class LogLevel : std::uint8_t { debug, info, warning, error };
const char* to_string(LogLevel level) noexcept;

// Called from any thread (the caller's or a background one), never under a pool lock, so it may
// call back into the pool. It must not throw. A background connection attempt that was under
// way when the pool closed may still log once it ends, so keep what the hook refers to alive
// (capture a shared_ptr rather than a reference to something with a shorter life).
using LogHook = std::function<void(LogLevel level, std::string_view message)>;

}  // namespace reservoir
