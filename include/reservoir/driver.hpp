// reservoir/driver.hpp: the driver interface. A driver opens Connections for one DSN scheme.
// Built-in drivers register themselves; an application may register its own or hand one to a
// pool directly through PoolOptions::driver (the tests' fault-injecting fake driver does this).
//
// Thread safety: connect() may be called from several threads at once (the caller's and the
// pool's background threads); each Connection it returns is then used by one thread at a time.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "reservoir/connection.hpp"
#include "reservoir/dsn.hpp"
#include "reservoir/nonblocking.hpp"

namespace reservoir {

class Driver {
 public:
  virtual ~Driver() = default;

  // The DSN scheme this driver serves, e.g. "sqlite".
  virtual std::string_view scheme() const noexcept = 0;

  // Opens a session, giving up after timeout (a zero timeout means the driver's default).
  // Errors: connect_failed, auth_failed (with SQLSTATE / native code when the database gave one).
  virtual std::unique_ptr<Connection> connect(const Dsn& dsn,
                                              std::chrono::milliseconds timeout) = 0;
  // The non-blocking form of connect(), for the async API (see reservoir/nonblocking.hpp); the
  // same errors come from the operation's resume(). nullptr (the default): no non-blocking path,
  // the async API runs connect() on its worker pool instead.
  virtual std::unique_ptr<ConnectOp> start_connect(const Dsn& dsn,
                                                   std::chrono::milliseconds timeout);
};

// Makes driver the one used for its scheme (matched case-insensitively), replacing any earlier
// one. Thread-safe, and usable from static initialisers. Throws Error{invalid_argument} for a null
// driver or an empty scheme.
void register_driver(std::shared_ptr<Driver> driver);

// The driver for scheme, or nullptr. Thread-safe.
std::shared_ptr<Driver> find_driver(std::string_view scheme);

// The schemes with a registered driver, sorted.
std::vector<std::string> registered_schemes();

}  // namespace reservoir
