// tests/unit/histogram_test.cpp: log-linear latency histograms: bucket bounds, percentile
// summaries, owned and shared recording.
#include "core/histogram.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <random>
#include <thread>
#include <vector>

namespace reservoir::core {
namespace {

using namespace std::chrono_literals;

constexpr std::uint64_t kTop = (std::uint64_t{1} << (kOctaves + 1)) - 1;  // last bucket's top

// Values worth checking: everything small, and around every power of two, plus random ones.
std::vector<std::uint64_t> probe_values(std::uint64_t limit) {
  std::vector<std::uint64_t> v;
  for (std::uint64_t i = 0; i <= 70000 && i <= limit; ++i) v.push_back(i);
  for (int e = 1; e < 64; ++e) {
    const std::uint64_t p = std::uint64_t{1} << e;
    for (std::uint64_t x : {p - 1, p, p + 1, p + p / 2, p + p / 3})
      if (x <= limit) v.push_back(x);
  }
  std::mt19937_64 rng(42);
  for (int i = 0; i < 100000; ++i) {
    const std::uint64_t x = rng() >> (rng() % 64);
    if (x <= limit) v.push_back(x);
  }
  return v;
}

TEST(HistogramBucketsTest, ZeroAndSmallValuesAreExact) {
  EXPECT_EQ(bucket_of(0), 0u);
  EXPECT_EQ(bucket_upper_ns(0), 0u);
  for (std::uint64_t v = 0; v < 2 * kSubBuckets; ++v) {
    EXPECT_EQ(bucket_of(v), v);
    EXPECT_EQ(bucket_upper_ns(v), v);
  }
}

TEST(HistogramBucketsTest, UpperBoundsIncreaseAndMatchBucketOf) {
  for (std::size_t b = 0; b + 1 < kBuckets; ++b) {
    const std::uint64_t top = bucket_upper_ns(b);
    EXPECT_LT(top, bucket_upper_ns(b + 1)) << "bucket " << b;
    EXPECT_EQ(bucket_of(top), b) << "bucket " << b;
    EXPECT_EQ(bucket_of(top + 1), b + 1) << "bucket " << b;
  }
  EXPECT_EQ(bucket_upper_ns(kBuckets - 1), kTop);
}

TEST(HistogramBucketsTest, BucketOfIsMonotonic) {
  std::vector<std::uint64_t> values = probe_values(std::numeric_limits<std::uint64_t>::max());
  std::sort(values.begin(), values.end());
  std::size_t prev = 0;
  for (std::uint64_t v : values) {
    const std::size_t b = bucket_of(v);
    ASSERT_GE(b, prev) << v;
    ASSERT_LT(b, kBuckets) << v;
    prev = b;
  }
}

TEST(HistogramBucketsTest, ValuesBeyondTheRangeClampToTheLastBucket) {
  EXPECT_EQ(bucket_of(kTop), kBuckets - 1);
  EXPECT_EQ(bucket_of(kTop + 1), kBuckets - 1);
  EXPECT_EQ(bucket_of(std::uint64_t{1} << 62), kBuckets - 1);
  EXPECT_EQ(bucket_of(std::numeric_limits<std::uint64_t>::max()), kBuckets - 1);
  // Out-of-range bucket numbers report the last bucket's bound rather than garbage.
  EXPECT_EQ(bucket_upper_ns(kBuckets + 5), kTop);
}

TEST(HistogramBucketsTest, RelativeErrorInRangeIsAtMostOneOverSubBuckets) {
  for (std::uint64_t v : probe_values(kTop)) {
    if (v == 0) continue;
    const std::uint64_t top = bucket_upper_ns(bucket_of(v));
    ASSERT_GE(top, v);
    ASSERT_LE(static_cast<double>(top - v) / static_cast<double>(v), 1.0 / kSubBuckets) << v;
  }
}

HistogramSnapshot snapshot_of(const LatencyHistogram& h) {
  HistogramSnapshot s;
  h.add_to(s);
  return s;
}

TEST(HistogramSummaryTest, EmptyIsAllZeros) {
  const LatencySummary s = HistogramSnapshot{}.summary();
  EXPECT_EQ(s.count, 0u);
  EXPECT_EQ(s.p50_us, 0u);
  EXPECT_EQ(s.p99_us, 0u);
  EXPECT_EQ(s.max_us, 0u);
}

TEST(HistogramSummaryTest, UniformOneToThousandMicroseconds) {
  LatencyHistogram h;
  for (int us = 1000; us >= 1; --us) h.record_owned(std::chrono::microseconds(us));
  const LatencySummary s = snapshot_of(h).summary();
  EXPECT_EQ(s.count, 1000u);
  EXPECT_EQ(s.max_us, 1000u);
  // The true p50 is 500 us and p99 990 us; reported values are bucket tops (at most 25% high).
  EXPECT_GE(s.p50_us, 500u);
  EXPECT_LE(s.p50_us, 500u * (kSubBuckets + 1) / kSubBuckets);
  EXPECT_GE(s.p99_us, 990u);
  EXPECT_LE(s.p99_us, 1000u);  // clamped to max
  EXPECT_LE(s.p50_us, s.p99_us);
}

TEST(HistogramSummaryTest, ZerosComeFirst) {
  HistogramSnapshot snap;
  snap.zeros = 60;
  LatencyHistogram h;
  for (int i = 0; i < 40; ++i) h.record_owned(1ms);
  h.add_to(snap);
  LatencySummary s = snap.summary();
  EXPECT_EQ(s.count, 100u);
  EXPECT_EQ(s.p50_us, 0u);
  EXPECT_EQ(s.p99_us, 1000u);  // the bucket top clamped to max: exactly 1 ms
  EXPECT_EQ(s.max_us, 1000u);

  // Rank 50 of 100 is the 50th sample: with exactly 50 zeros it is still zero.
  snap.zeros = 50;
  snap.counts[bucket_of(1000000)] = 50;
  s = snap.summary();
  EXPECT_EQ(s.p50_us, 0u);
  EXPECT_EQ(s.p99_us, 1000u);
  snap.zeros = 49;
  snap.counts[bucket_of(1000000)] = 51;
  EXPECT_EQ(snap.summary().p50_us, 1000u);
}

TEST(HistogramSummaryTest, P99OfAHundredIsTheNinetyNinthSample) {
  HistogramSnapshot snap;
  snap.zeros = 99;
  snap.counts[bucket_of(5000000)] = 1;
  snap.max_ns = 5000000;
  EXPECT_EQ(snap.summary().p99_us, 0u);
  snap.zeros = 98;
  snap.counts[bucket_of(5000000)] = 2;
  EXPECT_EQ(snap.summary().p99_us, 5000u);
}

TEST(HistogramSummaryTest, SubMicrosecondValuesRoundUp) {
  LatencyHistogram h;
  h.record_owned(1ns);
  LatencySummary s = snapshot_of(h).summary();
  EXPECT_EQ(s.p50_us, 1u);
  EXPECT_EQ(s.p99_us, 1u);
  EXPECT_EQ(s.max_us, 1u);

  LatencyHistogram h2;
  h2.record_owned(1001ns);
  s = snapshot_of(h2).summary();
  EXPECT_EQ(s.max_us, 2u);
  EXPECT_EQ(s.p50_us, 2u);  // bucket top 1023 ns clamped to 1001 ns, rounded up

  LatencyHistogram h3;
  h3.record_owned(0ns);
  h3.record_owned(-5ns);  // a clock going backwards counts as zero
  s = snapshot_of(h3).summary();
  EXPECT_EQ(s.count, 2u);
  EXPECT_EQ(s.p99_us, 0u);
  EXPECT_EQ(s.max_us, 0u);
}

TEST(HistogramSummaryTest, ValuesBeyondTheRangeReportTheMax) {
  LatencyHistogram h;
  h.record_owned(3h);
  const LatencySummary s = snapshot_of(h).summary();
  EXPECT_EQ(s.count, 1u);
  EXPECT_EQ(s.max_us, 3ull * 3600 * 1000000);
  EXPECT_EQ(s.p50_us, s.max_us);
  EXPECT_EQ(s.p99_us, s.max_us);
}

TEST(HistogramRecordTest, OwnedCountsAndMax) {
  LatencyHistogram h;
  h.record_owned(10us);
  h.record_owned(10us);
  h.record_owned(3ms);
  h.record_owned(2ms);
  const HistogramSnapshot snap = snapshot_of(h);
  EXPECT_EQ(snap.counts[bucket_of(10000)], 2u);
  EXPECT_EQ(snap.counts[bucket_of(3000000)], 1u);
  EXPECT_EQ(snap.counts[bucket_of(2000000)], 1u);
  EXPECT_EQ(snap.count(), 4u);
  EXPECT_EQ(snap.max_ns, 3000000u);
}

TEST(HistogramRecordTest, AddToSumsCountsAndKeepsTheLargerMax) {
  LatencyHistogram a;
  LatencyHistogram b;
  a.record_owned(5us);
  b.record_owned(5us);
  b.record_owned(7us);
  HistogramSnapshot snap;
  snap.max_ns = 6000;
  snap.zeros = 3;
  a.add_to(snap);
  EXPECT_EQ(snap.max_ns, 6000u);
  b.add_to(snap);
  EXPECT_EQ(snap.max_ns, 7000u);
  EXPECT_EQ(snap.counts[bucket_of(5000)], 2u);
  EXPECT_EQ(snap.zeros, 3u);
  EXPECT_EQ(snap.count(), 6u);
}

// Each thread owns one histogram (as each slot does) and also writes a shared one; a reader
// sums them while they run. The totals must agree at the end.
TEST(HistogramRecordTest, OwnedPerThreadAndSharedFromManyThreads) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 20000;
  std::vector<LatencyHistogram> owned(kThreads);
  LatencyHistogram shared;
  std::atomic<bool> done{false};

  std::thread reader([&] {
    while (!done.load()) {
      HistogramSnapshot snap;
      for (const auto& h : owned) h.add_to(snap);
      shared.add_to(snap);
      const LatencySummary s = snap.summary();
      ASSERT_LE(s.p50_us, s.p99_us);
      ASSERT_LE(s.p99_us, s.max_us);
    }
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < kThreads; ++t) {
    writers.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const auto d = std::chrono::nanoseconds(1 + (i % 1000) * 1000 + t);
        owned[t].record_owned(d);
        shared.record_shared(d);
      }
      // One distinct maximum per thread, so the shared max is decided by the CAS loop.
      owned[t].record_owned(std::chrono::milliseconds(10 + t));
      shared.record_shared(std::chrono::milliseconds(10 + t));
    });
  }
  for (auto& w : writers) w.join();
  done = true;
  reader.join();

  HistogramSnapshot from_owned;
  for (const auto& h : owned) h.add_to(from_owned);
  const HistogramSnapshot from_shared = snapshot_of(shared);
  EXPECT_EQ(from_owned.count(), std::uint64_t{kThreads} * (kPerThread + 1));
  EXPECT_EQ(from_shared.count(), from_owned.count());
  EXPECT_EQ(from_shared.counts, from_owned.counts);
  EXPECT_EQ(from_owned.max_ns, 1000000u * (10 + kThreads - 1));
  EXPECT_EQ(from_shared.max_ns, from_owned.max_ns);
  EXPECT_EQ(from_shared.summary().max_us, 1000u * (10 + kThreads - 1));
}

}  // namespace
}  // namespace reservoir::core
