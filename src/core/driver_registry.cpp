// src/core/driver_registry.cpp: the process-wide scheme -> driver map that built-in drivers join
// from their static initialisers and pools consult when no driver is given explicitly.
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "reservoir/driver.hpp"
#include "reservoir/error.hpp"

namespace reservoir {

namespace {

struct Registry {
  std::mutex mutex;
  // Keys are lower case, as Dsn::parse() makes schemes. std::less<> allows string_view lookups.
  std::map<std::string, std::shared_ptr<Driver>, std::less<>> drivers;  // guarded by mutex
};

// Built on first use, so a driver registering from another translation unit's static
// initialiser finds it ready whatever the initialisation order. Never destroyed, so a pool
// torn down during static destruction can still look a driver up.
Registry& registry() {
  static Registry* const instance = new Registry;
  return *instance;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace

void register_driver(std::shared_ptr<Driver> driver) {
  if (!driver) throw Error(ErrorCode::invalid_argument, "register_driver: driver is null");
  std::string scheme = lower(driver->scheme());
  if (scheme.empty()) {
    throw Error(ErrorCode::invalid_argument, "register_driver: driver has an empty scheme");
  }
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  r.drivers[std::move(scheme)] = std::move(driver);
}

std::shared_ptr<Driver> find_driver(std::string_view scheme) {
  const std::string key = lower(scheme);
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  const auto it = r.drivers.find(key);
  return it == r.drivers.end() ? nullptr : it->second;
}

std::vector<std::string> registered_schemes() {
  Registry& r = registry();
  std::lock_guard lock(r.mutex);
  std::vector<std::string> schemes;
  schemes.reserve(r.drivers.size());
  for (const auto& entry : r.drivers) schemes.push_back(entry.first);  // std::map: already sorted
  return schemes;
}

}  // namespace reservoir
