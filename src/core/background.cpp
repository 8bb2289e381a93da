// src/core/background.cpp: a small fixed set of worker threads with a timer queue.
#include "core/background.hpp"

#include <cstdlib>

namespace reservoir::core {

namespace {
// Connects block for milliseconds; a few threads keep one slow database from stalling the rest.
constexpr std::size_t kThreads = 4;
}  // namespace

Background& Background::instance() {
  // Leaked on purpose: pools may be destroyed during static destruction, after any static
  // Background object would already be gone. The threads end with the process.
  static Background* b = new Background();
  return *b;
}

Background::Background() {
  // At exit, let no new task start and give running ones (a connect in progress) a moment to
  // end, so that they do not run on while the process tears down the libraries they use.
  std::atexit([] { instance().stop_at_exit(); });
  threads_.reserve(kThreads);
  for (std::size_t i = 0; i < kThreads; ++i) {
    threads_.emplace_back([this] { run(); });
    threads_.back().detach();
  }
}

void Background::post(Task task) {
  {
    std::lock_guard lk(mutex_);
    ready_.push_back(std::move(task));
  }
  cv_.notify_one();
}

void Background::post_at(TimePoint at, Task task) {
  {
    std::lock_guard lk(mutex_);
    timed_.push(Timed{at, seq_++, std::move(task)});
  }
  cv_.notify_all();  // a sleeper may need an earlier wake-up
}

std::size_t Background::pending() const {
  std::lock_guard lk(mutex_);
  return ready_.size() + timed_.size() + running_;
}

void Background::stop_at_exit() noexcept {
  std::unique_lock lk(mutex_);
  stopping_ = true;
  idle_cv_.wait_for(lk, std::chrono::seconds(2), [this] { return running_ == 0; });
}

void Background::run() {
  std::unique_lock lk(mutex_);
  for (;;) {
    if (stopping_) {
      cv_.wait(lk);  // the process is exiting: start nothing more
      continue;
    }
    auto now = std::chrono::steady_clock::now();
    while (!timed_.empty() && timed_.top().at <= now) {
      ready_.push_back(std::move(const_cast<Timed&>(timed_.top()).task));
      timed_.pop();
    }
    if (!ready_.empty()) {
      Task task = std::move(ready_.front());
      ready_.pop_front();
      ++running_;
      lk.unlock();
      try {
        task();
      } catch (...) {
        // Tasks report their own failures; nothing may take a background thread down.
      }
      task = nullptr;  // release captured references outside the lock
      lk.lock();
      if (--running_ == 0) idle_cv_.notify_all();
      continue;
    }
    if (timed_.empty()) {
      cv_.wait(lk);
    } else {
      // A copy: wait_until reads its deadline again after waking, and meanwhile another thread
      // may have pushed and moved the queue's storage.
      const TimePoint at = timed_.top().at;
      cv_.wait_until(lk, at);
    }
  }
}

}  // namespace reservoir::core
