// src/core/hazard.cpp: the list of per-thread hazard records.
#include "core/hazard.hpp"

#include <thread>

namespace reservoir::core {

namespace {

std::atomic<HazardRecord*> g_records{nullptr};

HazardRecord* claim() {
  for (HazardRecord* r = g_records.load(std::memory_order_acquire); r != nullptr; r = r->next) {
    bool expected = false;
    if (!r->taken.load(std::memory_order_relaxed) &&
        r->taken.compare_exchange_strong(expected, true, std::memory_order_acq_rel))
      return r;
  }
  auto* r = new HazardRecord;  // lives until the process ends
  r->taken.store(true, std::memory_order_relaxed);
  HazardRecord* head = g_records.load(std::memory_order_relaxed);
  do {
    r->next = head;
  } while (!g_records.compare_exchange_weak(head, r, std::memory_order_release,
                                            std::memory_order_relaxed));
  return r;
}

// Hands the record back when the thread ends.
struct Holder {
  HazardRecord* record = nullptr;
  ~Holder() {
    if (record == nullptr) return;
    record->engine.store(nullptr, std::memory_order_release);
    record->taken.store(false, std::memory_order_release);
  }
};
thread_local Holder t_holder;

}  // namespace

thread_local HazardRecord* t_hazard = nullptr;

HazardRecord& claim_hazard() noexcept {
  t_holder.record = claim();
  t_hazard = t_holder.record;
  return *t_hazard;
}

void wait_until_no_hazard(const void* engine) noexcept {
  const HazardRecord* mine = t_hazard;
  for (HazardRecord* r = g_records.load(std::memory_order_acquire); r != nullptr; r = r->next) {
    if (r == mine) continue;  // the caller's own release (a log hook dropping its pool)
    while (r->engine.load(std::memory_order_acquire) == engine) std::this_thread::yield();
  }
}

}  // namespace reservoir::core
