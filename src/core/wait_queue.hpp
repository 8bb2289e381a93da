// src/core/wait_queue.hpp: the first-come-first-served queue of acquirers waiting for a
// connection. Intrusive (each Waiter lives on its acquirer's stack), so waiting allocates
// nothing. Not thread-safe by itself: the engine guards it with its mutex.
//
// One queue serves both front ends: a synchronous acquirer sleeps on its Waiter's condition
// variable; an asynchronous one (src/async) sets `notify`, which the engine calls under its
// mutex and which must only schedule the coroutine's resumption, never run it inline.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <thread>

namespace reservoir::core {

struct Slot;

struct Waiter {
  std::condition_variable cv;  // synchronous acquirers sleep on it
  // Asynchronous acquirers: called instead of cv.notify_one(), under the engine's mutex.
  void (*notify)(Waiter&) noexcept = nullptr;
  void* context = nullptr;                      // for notify
  std::chrono::steady_clock::time_point handoff_at;  // past its starvation bound (Engine)
  std::uint64_t user_hash = 0;  // heterogeneous pools: only this user's connections fit
  Slot* handed = nullptr;       // a releaser handed this waiter a connection
  bool signalled = false;       // a wake-up is on its way; don't spend another on this waiter
  bool preparing = false;       // checking a connection outside the lock; skip it meanwhile
  Waiter* prev = nullptr;
  Waiter* next = nullptr;
  bool queued = false;
  // A releaser that will notify cv after leaving the engine's mutex (so that the woken thread
  // does not wake only to block on that mutex) pins the waiter first: the waiter's owner cannot
  // destroy it, and so cv, until the notify is done.
  std::atomic<std::uint32_t> pins{0};

  Waiter() = default;
  Waiter(const Waiter&) = delete;
  Waiter& operator=(const Waiter&) = delete;
  ~Waiter() {
    while (pins.load(std::memory_order_acquire) != 0) std::this_thread::yield();
  }

  void wake() noexcept {
    if (notify != nullptr) {
      notify(*this);
    } else {
      cv.notify_one();
    }
  }

  // As wake(), but a synchronous waiter is pinned and returned, for notify_pinned() once the
  // caller has left the mutex; nullptr when it was woken now (asynchronous waiters always are:
  // their notify only schedules a resumption).
  Waiter* wake_later() noexcept {
    if (notify != nullptr) {
      notify(*this);
      return nullptr;
    }
    pins.fetch_add(1, std::memory_order_relaxed);
    return this;
  }
  // wake_later() into *later when later is given, else wake().
  void wake(Waiter** later) noexcept {
    if (later != nullptr) {
      *later = wake_later();
    } else {
      wake();
    }
  }
  void notify_pinned() noexcept {
    cv.notify_one();
    pins.fetch_sub(1, std::memory_order_release);  // after this the waiter may be gone
  }
};

class WaitQueue {
 public:
  bool empty() const noexcept { return head_ == nullptr; }
  std::uint32_t size() const noexcept { return size_; }
  Waiter* head() const noexcept { return head_; }

  void push(Waiter& w) noexcept {
    w.prev = tail_;
    w.next = nullptr;
    if (tail_ != nullptr)
      tail_->next = &w;
    else
      head_ = &w;
    tail_ = &w;
    w.queued = true;
    ++size_;
  }

  void remove(Waiter& w) noexcept {
    if (!w.queued) return;
    if (w.prev != nullptr)
      w.prev->next = w.next;
    else
      head_ = w.next;
    if (w.next != nullptr)
      w.next->prev = w.prev;
    else
      tail_ = w.prev;
    w.prev = w.next = nullptr;
    w.queued = false;
    --size_;
  }

  // The oldest waiter that can take a connection of `user_hash` now (not busy checking one and
  // not already handed one).
  Waiter* first_ready_for(std::uint64_t user_hash) const noexcept {
    for (Waiter* w = head_; w != nullptr; w = w->next)
      if (!w->preparing && w->handed == nullptr && w->user_hash == user_hash) return w;
    return nullptr;
  }

  // Wakes the oldest waiter (of the given user, or any when all_users), unless a wake-up that
  // such a waiter would get is already on its way: then it does nothing. One woken waiter at a
  // time (as Go's mutex has one `woken` flag): several releases in a row wake one waiter, not
  // one each, because a releasing thread usually takes its connection back before the woken
  // ones run, so the rest would wake for nothing. The engine passes the wake-up on when the
  // woken waiter leaves the queue while connections are still free (Engine::dequeue).
  //
  // later: nullptr, or where to put a synchronous waiter to notify after the mutex is left
  // (Waiter::wake_later; the caller must then call notify_pinned() on it).
  void wake_one(std::uint64_t user_hash, bool all_users, Waiter** later = nullptr) noexcept {
    for (Waiter* w = head_; w != nullptr; w = w->next) {
      if (w->preparing || w->handed != nullptr) continue;
      if (!all_users && w->user_hash != user_hash) continue;
      if (w->signalled) return;
      w->signalled = true;
      w->wake(later);
      return;
    }
  }

  void wake_all() noexcept {
    for (Waiter* w = head_; w != nullptr; w = w->next) {
      w->signalled = true;
      w->wake();
    }
  }

 private:
  Waiter* head_ = nullptr;
  Waiter* tail_ = nullptr;
  std::uint32_t size_ = 0;
};

}  // namespace reservoir::core
