// reservoir/reservoir.hpp: everything an application needs, in one include.
#pragma once

#include "reservoir/connection.hpp"
#include "reservoir/driver.hpp"
#include "reservoir/dsn.hpp"
#include "reservoir/error.hpp"
#include "reservoir/lease.hpp"
#include "reservoir/options.hpp"
#include "reservoir/pool.hpp"
#include "reservoir/registry.hpp"
#include "reservoir/stats.hpp"
#include "reservoir/transaction.hpp"
#include "reservoir/value.hpp"
