// bench/tcp_relay.cpp: the cheapest proxy there is, as a reference for reservoird's benchmark
// (scripts/bench-reservoird, docs/benchmarks.md "reservoird against PgBouncer"). One thread, one
// level-triggered epoll set, one server connection per client, bytes copied both ways as they
// come: no protocol, no pooling, no authentication. Whatever a pooler costs on top of a direct
// connection, this costs at least the part every user-space proxy pays (two more sockets, a read
// and a write per message each way, and the extra wake-ups).
//
//   tcp_relay LISTEN_PORT TARGET_HOST TARGET_PORT     # 127.0.0.1:LISTEN_PORT -> target
//
// Prints "listening PORT" once ready; runs until SIGTERM or SIGINT. Not a product: writes are
// blocking (pgbench's messages are small), errors close the pair.
#include <arpa/inet.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

namespace {

volatile std::sig_atomic_t stop = 0;

int connect_to(const char* host, const char* port) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (::getaddrinfo(host, port, &hints, &res) != 0) return -1;
  int fd = -1;
  for (addrinfo* a = res; a != nullptr && fd < 0; a = a->ai_next) {
    fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
    if (fd >= 0 && ::connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  ::freeaddrinfo(res);
  return fd;
}

void no_delay(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

bool write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::send(fd, p, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    p += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: tcp_relay LISTEN_PORT TARGET_HOST TARGET_PORT\n");
    return 2;
  }
  std::signal(SIGTERM, [](int) { stop = 1; });
  std::signal(SIGINT, [](int) { stop = 1; });
  std::signal(SIGPIPE, SIG_IGN);

  const int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  const int one = 1;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(std::atoi(argv[1])));
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
      ::listen(listener, 4096) != 0) {
    std::perror("tcp_relay: listen");
    return 1;
  }
  const int ep = ::epoll_create1(0);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listener;
  ::epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
  std::printf("listening %s\n", argv[1]);
  std::fflush(stdout);

  std::vector<int> peer;  // peer[fd]: the other end of fd's pair, -1 if none
  auto close_pair = [&](int fd) {
    const int other = peer[fd];
    for (const int f : {fd, other}) {
      if (f < 0) continue;
      ::epoll_ctl(ep, EPOLL_CTL_DEL, f, nullptr);
      ::close(f);
      peer[f] = -1;
    }
  };
  std::vector<char> buf(64 * 1024);
  epoll_event events[256];
  while (stop == 0) {
    const int n = ::epoll_wait(ep, events, 256, 200);
    for (int i = 0; i < n; ++i) {
      const int fd = events[i].data.fd;
      if (fd == listener) {
        const int client = ::accept(listener, nullptr, nullptr);
        if (client < 0) continue;
        const int server = connect_to(argv[2], argv[3]);
        if (server < 0) {
          ::close(client);
          continue;
        }
        no_delay(client);
        no_delay(server);
        const auto need = static_cast<std::size_t>(std::max(client, server)) + 1;
        if (peer.size() < need) peer.resize(need, -1);
        peer[client] = server;
        peer[server] = client;
        for (const int f : {client, server}) {
          epoll_event e{};
          e.events = EPOLLIN;
          e.data.fd = f;
          ::epoll_ctl(ep, EPOLL_CTL_ADD, f, &e);
        }
        continue;
      }
      if (static_cast<std::size_t>(fd) >= peer.size() || peer[fd] < 0) continue;  // closed
      const ssize_t got = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
      if (got == 0 || (got < 0 && errno != EAGAIN && errno != EINTR) ||
          (got > 0 && !write_all(peer[fd], buf.data(), static_cast<std::size_t>(got))))
        close_pair(fd);
    }
  }
  return 0;
}
