// src/server/session.hpp: one reservoird client, as one C++20 coroutine: startup (SSLRequest and
// GSSENCRequest answered 'N', CancelRequest forwarded), authentication per auth_type, then the
// relay between the client and server connections borrowed from its pool per pool mode.
//
//   asio::co_spawn(io, serve_client(daemon, std::move(socket)), asio::detached);
//
// Thread safety: the coroutine runs on one single-threaded io_context.
#pragma once

#include <asio/awaitable.hpp>
#include <asio/basic_stream_socket.hpp>
#include <asio/generic/stream_protocol.hpp>
#include <asio/io_context.hpp>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "reservoir/options.hpp"

namespace reservoir::server {

class Daemon;

// A client's socket: TCP or Unix, on one io_context (its executor type keeps each pending
// operation and the socket object small: idle clients are most of reservoird's memory).
using ClientSocket =
    asio::basic_stream_socket<asio::generic::stream_protocol, asio::io_context::executor_type>;

// Serves the client until it leaves, fails, or the daemon shuts down. Never throws.
asio::awaitable<void> serve_client(Daemon& daemon, ClientSocket socket);

// What the client's startup "options" parameter asks of reservoird, and the rest of it for the
// server: `-c reservoir.cclass=REPORTING -c reservoir.purity=self` (also `-creservoir.x=y` and
// `--reservoir.x=y`) are taken out; everything else is kept as written.
struct ClientOptions {
  std::string cclass;            // empty: the default class
  Purity purity = Purity::self;  // "self" or "new"
  std::string server_options;    // what remains, for the server's startup packet
  std::string error;             // non-empty: a bad value (the client gets an error)
};
ClientOptions parse_client_options(std::string_view options);

}  // namespace reservoir::server
