// src/core/histogram.cpp: log-linear latency histograms; recording is a handful of instructions
// so it can run on every acquire and release.
#include "core/histogram.hpp"

#include <algorithm>
#include <bit>
#include <limits>

namespace reservoir::core {

namespace {


// Microseconds, rounded up: a percentile reported from a histogram is already an upper bound
// (the bucket's top), and rounding up keeps it one, so a nonzero sub-microsecond wait shows as
// 1 us rather than as 0 (which reads as "no wait at all"). Only 0 ns maps to 0 us.
constexpr std::uint64_t ns_to_us_ceil(std::uint64_t ns) noexcept {
  return ns / 1000 + (ns % 1000 != 0 ? 1 : 0);
}

// The smallest rank r (1-based) with r >= n * num / den, without overflowing n * num.
constexpr std::uint64_t rank_of(std::uint64_t n, std::uint64_t num, std::uint64_t den) noexcept {
  // ceil(n * num / den) = n - floor(n * (den - num) / den), and with n = q * den + r the floor is
  // q * (den - num) + floor(r * (den - num) / den).
  const std::uint64_t k = den - num;
  const std::uint64_t below = n / den * k + n % den * k / den;
  return std::max<std::uint64_t>(n - below, 1);
}

}  // namespace

std::uint64_t bucket_upper_ns(std::size_t bucket) noexcept {
  bucket = std::min(bucket, kBuckets - 1);
  // Inverse of bucket_of_unclamped: buckets below kSubBuckets hold the single value `bucket`;
  // from there on bucket = shift * kSubBuckets + m with m in [kSubBuckets, 2 * kSubBuckets),
  // holding [m << shift, (m + 1) << shift).
  const std::size_t shift = std::max<std::size_t>(bucket >> kSubBits, 1) - 1;
  const std::uint64_t m = bucket - (shift << kSubBits);
  return ((m + 1) << shift) - 1;
}

LatencySummary HistogramSnapshot::summary() const noexcept {
  LatencySummary s;
  s.count = count();
  if (s.count == 0) return s;
  s.max_us = ns_to_us_ceil(max_ns);

  // Walks the cumulative counts once for both ranks. A sample in the last bucket may lie beyond
  // its nominal top (values clamp there), so that bucket reports max_ns; every other bucket
  // reports its top clamped to max_ns, so p50 <= p99 <= max even in a torn snapshot.
  const std::uint64_t rank50 = rank_of(s.count, 50, 100);
  const std::uint64_t rank99 = rank_of(s.count, 99, 100);
  auto value_of = [this](std::size_t bucket) {
    return bucket == kBuckets - 1 ? max_ns : std::min(bucket_upper_ns(bucket), max_ns);
  };
  std::uint64_t p50_ns = 0;
  std::uint64_t p99_ns = 0;
  std::uint64_t seen = zeros;
  bool have50 = seen >= rank50;
  bool have99 = seen >= rank99;
  for (std::size_t b = 0; b < kBuckets && !have99; ++b) {
    if (counts[b] == 0) continue;
    seen += counts[b];
    if (!have50 && seen >= rank50) {
      p50_ns = value_of(b);
      have50 = true;
    }
    if (seen >= rank99) {
      p99_ns = value_of(b);
      have99 = true;
    }
  }
  s.p50_us = ns_to_us_ceil(p50_ns);
  s.p99_us = ns_to_us_ceil(p99_ns);
  return s;
}

std::uint64_t HistogramSnapshot::count() const noexcept {
  std::uint64_t n = zeros;
  for (std::uint64_t c : counts) n += c;
  return n;
}

void LatencyHistogram::record_shared(std::chrono::nanoseconds d) noexcept {
  const auto ns = static_cast<std::uint64_t>(std::max<std::chrono::nanoseconds::rep>(d.count(), 0));
  counts_[bucket_of(ns)].fetch_add(1, std::memory_order_relaxed);
  std::uint64_t cur = max_ns_.load(std::memory_order_relaxed);
  while (ns > cur && !max_ns_.compare_exchange_weak(cur, ns, std::memory_order_relaxed)) {
  }
}

void LatencyHistogram::add_to(HistogramSnapshot& out) const noexcept {
  for (std::size_t b = 0; b < kBuckets; ++b) {
    out.counts[b] += counts_[b].load(std::memory_order_relaxed);
  }
  out.max_ns = std::max(out.max_ns, max_ns_.load(std::memory_order_relaxed));
}

}  // namespace reservoir::core
