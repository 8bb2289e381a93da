// reservoir/lease.hpp: a connection on loan from a pool. Move-only; the destructor returns it.
//
//   {
//     reservoir::Lease c = pool->acquire();
//     c->execute("UPDATE counters SET n = n + 1");
//   }                                    // back in the pool here
//
// On return, a connection inside an open transaction is rolled back (or discarded if that
// fails); a broken connection is discarded. A lease may outlive its pool: it keeps working and
// its connection is closed when the lease ends. After Pool::close(force=true) the lease is
// revoked: using it throws pool_closed and destroying it is harmless.
//
// Thread safety: one Lease is used by one thread at a time; different leases are independent.
#pragma once

#include <string>
#include <string_view>

#include "reservoir/connection.hpp"

namespace reservoir {

namespace core {
class Engine;
struct Slot;
}  // namespace core

class [[nodiscard]] Lease {
 public:
  Lease() noexcept = default;  // holds nothing
  ~Lease() { release(); }
  Lease(Lease&& other) noexcept : engine_(other.engine_), slot_(other.slot_) {
    other.engine_ = nullptr;
    other.slot_ = nullptr;
  }
  Lease& operator=(Lease&& other) noexcept;
  Lease(const Lease&) = delete;
  Lease& operator=(const Lease&) = delete;

  // The connection. Throws lease_invalid when empty, pool_closed when revoked.
  Connection& operator*() const { return connection(); }
  Connection* operator->() const { return &connection(); }
  Connection& connection() const;

  // True while this lease holds a connection (it may still be revoked).
  explicit operator bool() const noexcept { return slot_ != nullptr; }

  // Returns the connection to the pool now. Idempotent; never throws.
  void release() noexcept;

  // Returns the connection and tags its session: later acquire({.tag = tag}) calls prefer it.
  // An empty tag removes the tag. Idempotent; never throws.
  void release(std::string_view tag) noexcept;

  // The tag the connection carries (what the session callback or release(tag) set).
  const std::string& tag() const;

  // Closes the connection instead of returning it (for a session in a state nobody should
  // inherit). Idempotent; never throws.
  void drop() noexcept;

 private:
  friend class core::Engine;
  Lease(core::Engine* engine, core::Slot* slot) noexcept : engine_(engine), slot_(slot) {}
  void end(bool drop, const std::string_view* tag) noexcept;

  core::Engine* engine_ = nullptr;
  core::Slot* slot_ = nullptr;
};

}  // namespace reservoir
