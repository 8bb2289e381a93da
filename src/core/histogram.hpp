// src/core/histogram.hpp: log-linear latency histograms for acquire wait times and lease hold
// times, cheap enough for the acquire/release path.
#pragma once

#include <algorithm>
#include <array>
#include <bit>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>

#include "reservoir/stats.hpp"

namespace reservoir::core {

// Buckets: kSubBuckets per power of two of nanoseconds. Values below 2 * kSubBuckets ns get a
// bucket each (0 ns is bucket 0); from there each octave [2^e, 2^(e+1)) spans kSubBuckets
// buckets, up to 2^(kOctaves + 1) ns (~36 minutes); larger values land in the last bucket.
// Relative error of a reported percentile (a bucket's upper bound): below 1 / kSubBuckets.
inline constexpr std::size_t kSubBuckets = 4;
inline constexpr std::size_t kOctaves = 40;
inline constexpr std::size_t kBuckets = kSubBuckets * kOctaves;

static_assert(std::has_single_bit(kSubBuckets), "kSubBuckets must be a power of two");
// log2(kSubBuckets): how many bits below the leading one select the sub-bucket.
inline constexpr int kSubBits = std::countr_zero(kSubBuckets);
static_assert(kBuckets >= 2 * kSubBuckets, "the exact range needs two octaves of buckets");

// The bucket a duration falls into. Values below 2 * kSubBuckets get a bucket each (exact).
// Above that, a value with its leading one at bit e keeps its top kSubBits + 1 bits: the bucket
// is shift * kSubBuckets + (v >> shift) with shift = e - kSubBits, so each octave
// [2^e, 2^(e+1)) spans kSubBuckets buckets of equal width 2^shift. Inline: it runs on every
// lease release.
inline std::size_t bucket_of(std::uint64_t ns) noexcept {
  // (libstdc++ 12 returns bit_width as the argument type, not int.)
  const int shift = std::max(static_cast<int>(std::bit_width(ns)) - 1 - kSubBits, 0);
  const std::size_t b =
      (static_cast<std::size_t>(shift) << kSubBits) + static_cast<std::size_t>(ns >> shift);
  return std::min(b, kBuckets - 1);  // a conditional move: no branch for the clamp
}

// The upper bound (ns) a bucket reports.
std::uint64_t bucket_upper_ns(std::size_t bucket) noexcept;

struct HistogramSnapshot {
  std::array<std::uint64_t, kBuckets> counts{};
  std::uint64_t zeros = 0;  // samples known to be zero (e.g. acquires served at once)
  std::uint64_t max_ns = 0;

  // p50, p99 and max in microseconds over all samples (zeros included). A percentile is the upper
  // bound of the bucket holding it, clamped to max_ns; microseconds are rounded up, so only a
  // 0 ns value shows as 0 us. Empty: all zeros.
  LatencySummary summary() const noexcept;
  // zeros plus every bucket's count.
  std::uint64_t count() const noexcept;
};

class LatencyHistogram {
 public:
  // For one writer at a time (the owner of the slot being measured): plain loads and stores, no
  // read-modify-write, no shared cache line. Readers on other threads see a consistent-enough
  // picture for statistics.
  void record_owned(std::chrono::nanoseconds d) noexcept {
    const auto ns = static_cast<std::uint64_t>(std::max<std::chrono::nanoseconds::rep>(d.count(), 0));
    auto& c = counts_[bucket_of(ns)];
    // Single writer: a plain load and store is enough and avoids a locked instruction.
    c.store(c.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
    // A new maximum is rare, so the branch predicts well and the line is only read.
    if (ns > max_ns_.load(std::memory_order_relaxed)) max_ns_.store(ns, std::memory_order_relaxed);
  }
  // For any number of concurrent writers.
  void record_shared(std::chrono::nanoseconds d) noexcept;
  // Adds the counts into out (any thread).
  void add_to(HistogramSnapshot& out) const noexcept;

 private:
  std::array<std::atomic<std::uint64_t>, kBuckets> counts_{};
  std::atomic<std::uint64_t> max_ns_{0};
};

}  // namespace reservoir::core
