// src/core/class_table.hpp: per connection class statistics (DRCP's NUM_REQUESTS, NUM_HITS,
// NUM_MISSES, NUM_WAITS), found by the class name's hash without a lock.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "reservoir/stats.hpp"

namespace reservoir::core {

std::uint64_t hash_name(std::string_view s) noexcept;  // 0 only for the empty string

class ClassTable {
 public:
  struct Entry {
    std::atomic<std::uint64_t> hash{0};
    std::string name;  // written once, before hash is published
    std::atomic<std::uint64_t> requests{0}, hits{0}, misses{0}, waits{0};
  };
  static constexpr std::size_t kCapacity = 64;

  // The entry for a class, creating it on first use. Classes beyond kCapacity share one
  // overflow entry named "(other)". Thread-safe.
  Entry& entry(std::string_view name, std::uint64_t hash);

  void snapshot(std::map<std::string, ClassStats>& out) const;

 private:
  std::array<Entry, kCapacity + 1> entries_{};
  std::mutex insert_mutex_;
};

}  // namespace reservoir::core
