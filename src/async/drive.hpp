// src/async/drive.hpp: drives a driver's NonBlockingOp (reservoir/nonblocking.hpp) on the
// calling coroutine's executor, waiting for the socket readiness and timeouts it asks for.
#pragma once

#include <asio/awaitable.hpp>

#include "reservoir/nonblocking.hpp"

namespace reservoir::async {

// Runs op until done. Throws what op.resume() throws. Cancelled (or the coroutine destroyed)
// before the end: op.abandon(), then asio::system_error(operation_aborted) is thrown.
asio::awaitable<void> drive(NonBlockingOp& op);

}  // namespace reservoir::async
