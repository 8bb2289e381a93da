// src/core/options_check.hpp: validation of PoolOptions and PoolSettings, and the choice of
// driver, shared by Pool::create() and Pool::reconfigure() (internal, not installed).
#pragma once

#include <cstdint>
#include <memory>

#include "reservoir/driver.hpp"
#include "reservoir/dsn.hpp"
#include "reservoir/options.hpp"

namespace reservoir::core {

// Checks every field of o and returns its parsed DSN. Throws Error{invalid_argument} naming the
// first bad field: the DSN (see Dsn::parse), then max, min, increment, get_mode, wait_timeout,
// connect_timeout, and last whether a driver exists (o.driver, whatever its scheme, or the one
// registered for the DSN's scheme). Messages never hold the password.
Dsn check_options(const PoolOptions& o);

// Checks that applying s to a pool now sized current_min..current_max gives valid options: the
// fields that are set obey the rules of check_options(), and the resulting min is not above the
// resulting max. Throws Error{invalid_argument} naming the field.
void check_settings(const PoolSettings& s, std::uint32_t current_min, std::uint32_t current_max);

// o.driver if set, else the driver registered for dsn.scheme. Never returns null: throws
// Error{invalid_argument} "dsn: no driver for scheme '...' (available: ...)".
std::shared_ptr<Driver> resolve_driver(const PoolOptions& o, const Dsn& dsn);

}  // namespace reservoir::core
