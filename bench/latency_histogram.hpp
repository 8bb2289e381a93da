// bench/latency_histogram.hpp: the latency histogram the benchmarks share (pool_bench.cpp's
// acquire waits, db_pool_bench.cpp's request latencies).
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <chrono>
#include <cstddef>
#include <cstdint>

namespace reservoir::bench {

// A histogram of durations in nanoseconds: 8 buckets per power of two, so a percentile read from
// it is at most 12.5% above the true value. Fixed size, so recording never allocates.
class LatencyHistogram {
 public:
  void clear() noexcept {
    counts_.fill(0);
    count_ = 0;
    max_ = 0;
  }

  void record(std::chrono::steady_clock::duration d) noexcept {
    const auto ns =
        static_cast<std::uint64_t>(std::max<std::chrono::steady_clock::rep>(0, d.count()));
    ++counts_[bucket_of(ns)];
    ++count_;
    if (ns > max_) max_ = ns;
  }

  void merge(const LatencyHistogram& other) noexcept {
    for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += other.counts_[i];
    count_ += other.count_;
    if (other.max_ > max_) max_ = other.max_;
  }

  std::uint64_t max_ns() const noexcept { return max_; }

  // The upper bound of the bucket holding the p-th fraction of samples (p in [0, 1]).
  std::uint64_t percentile_ns(double p) const noexcept {
    if (count_ == 0) return 0;
    const auto rank = static_cast<std::uint64_t>(p * static_cast<double>(count_ - 1)) + 1;
    std::uint64_t seen = 0;
    for (std::size_t b = 0; b < counts_.size(); ++b) {
      seen += counts_[b];
      if (seen >= rank) return std::min(bucket_upper(b), max_);
    }
    return max_;
  }

 private:
  static constexpr int kSubBits = 3;
  static constexpr std::uint64_t kSub = 1u << kSubBits;

  static std::size_t bucket_of(std::uint64_t ns) noexcept {
    if (ns < kSub) return static_cast<std::size_t>(ns);
    const int e = std::bit_width(ns) - 1;  // >= kSubBits
    const std::uint64_t sub = (ns >> (e - kSubBits)) & (kSub - 1);
    return static_cast<std::size_t>((e - kSubBits + 1) * kSub + sub);
  }

  static std::uint64_t bucket_upper(std::size_t b) noexcept {
    if (b < kSub) return b;
    const int e = static_cast<int>(b / kSub) + kSubBits - 1;
    const std::uint64_t lower = (kSub + b % kSub) << (e - kSubBits);
    return lower + (std::uint64_t{1} << (e - kSubBits)) - 1;
  }

  std::array<std::uint64_t, 64 * kSub> counts_{};
  std::uint64_t count_ = 0;
  std::uint64_t max_ = 0;
};

}  // namespace reservoir::bench
