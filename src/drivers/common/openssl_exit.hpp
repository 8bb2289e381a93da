// src/drivers/common/openssl_exit.hpp: keeps OpenSSL from tearing itself down at process exit
// while a pool's background thread may still be inside a TLS or SCRAM handshake.
#pragma once

namespace reservoir::drivers {

// By default OpenSSL frees its state from an atexit handler. A connection attempt still running
// on a background thread when main() returns (libpq's SCRAM, Connector/C's TLS) would then use
// freed memory and crash the exiting process. Drivers that reach OpenSSL call this from their
// registration, before any connect, so that OpenSSL's first initialisation opts out of that
// handler (the operating system reclaims the memory at exit anyway). Idempotent, thread-safe.
void keep_openssl_until_exit() noexcept;

}  // namespace reservoir::drivers
