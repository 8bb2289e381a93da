// src/core/hazard.hpp: per-thread marks that say "this thread is inside a release on engine E",
// so that a pool being destroyed waits for releases still touching it (a lease's release may be
// preempted after it has made its slot idle, while the slot changes hands and the last pool
// handle goes away). Marking costs the releasing thread two stores to a line of its own.
#pragma once

#include <atomic>

namespace reservoir::core {

struct HazardRecord {
  std::atomic<const void*> engine{nullptr};
  std::atomic<bool> taken{false};
  HazardRecord* next = nullptr;  // records are never freed: a list that only grows
};

// This thread's record (claimed on first use, handed back when the thread ends). Inline, and
// the pointer is constant-initialised, so the common case is one thread-local load.
extern thread_local HazardRecord* t_hazard;
HazardRecord& claim_hazard() noexcept;
inline HazardRecord& my_hazard() noexcept {
  HazardRecord* h = t_hazard;
  return h != nullptr ? *h : claim_hazard();
}

// Returns once no thread other than the caller marks `engine`.
void wait_until_no_hazard(const void* engine) noexcept;

}  // namespace reservoir::core
