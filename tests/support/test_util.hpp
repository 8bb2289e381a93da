// tests/support/test_util.hpp: small helpers the driver and pool tests share: the Error a call
// throws, a TCP listener that never answers, a port nothing listens on, bytes from text.
#pragma once

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <utility>

#include "reservoir/error.hpp"
#include "reservoir/options.hpp"
#include "reservoir/value.hpp"

namespace reservoir::testing {

// The Error f throws (a test failure if it throws none).
template <class F>
Error error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "expected a reservoir::Error";
  return Error(ErrorCode::internal, "no error thrown");
}

// A TCP port on 127.0.0.1 that completes the handshake (the kernel queues up to `backlog`
// connections) but never says a word: a server that hangs, to prove the connect timeout.
class SilentListener {
 public:
  explicit SilentListener(int backlog = 16) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    EXPECT_EQ(::listen(fd_, backlog), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
  }
  ~SilentListener() { ::close(fd_); }
  SilentListener(const SilentListener&) = delete;
  SilentListener& operator=(const SilentListener&) = delete;
  std::uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

// A port nothing listens on: connects are refused at once.
inline std::uint16_t closed_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

// The options of the integration tests' pools on a real server: dsn, min..max connections,
// acquires waiting up to wait_timeout, connects failing after 5 s and failing create() at once.
inline PoolOptions server_pool_options(std::string dsn, std::uint32_t min, std::uint32_t max,
                                       std::chrono::milliseconds wait_timeout) {
  PoolOptions o;
  o.dsn = std::move(dsn);
  o.min = min;
  o.max = max;
  o.wait_timeout = wait_timeout;
  o.connect_timeout = std::chrono::seconds(5);
  o.fail_fast = true;
  return o;
}

// The bytes of s, as a BLOB value.
inline Bytes bytes_of(std::string_view s) {
  const auto* p = reinterpret_cast<const std::byte*>(s.data());
  return Bytes(p, p + s.size());
}

}  // namespace reservoir::testing
