// src/core/histogram.hpp: log-linear latency histograms for acquire wait times and lease hold
// times, cheap enough for the acquire/release path.
#pragma once

#include <array>
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

// The bucket a duration falls into, and the upper bound (ns) a bucket reports.
std::size_t bucket_of(std::uint64_t ns) noexcept;
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
  void record_owned(std::chrono::nanoseconds d) noexcept;
  // For any number of concurrent writers.
  void record_shared(std::chrono::nanoseconds d) noexcept;
  // Adds the counts into out (any thread).
  void add_to(HistogramSnapshot& out) const noexcept;

 private:
  std::array<std::atomic<std::uint64_t>, kBuckets> counts_{};
  std::atomic<std::uint64_t> max_ns_{0};
};

}  // namespace reservoir::core
