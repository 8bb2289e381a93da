// src/server/backend.cpp: reservoird's PostgreSQL server connections: TCP connect, startup and
// authentication (SCRAM-SHA-256, md5, cleartext), and blocking simple-protocol round trips.
#include "server/backend.hpp"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "reservoir/error.hpp"
#include "server/auth.hpp"

namespace reservoir::server {
namespace {

using Clock = std::chrono::steady_clock;

int ms_left(Clock::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left <= 0 ? 0 : static_cast<int>(left > 1'000'000 ? 1'000'000 : left);
}

std::uint64_t affected_from_tag(std::string_view tag) {
  const std::size_t space = tag.rfind(' ');
  if (space == std::string_view::npos) return 0;
  std::uint64_t n = 0;
  std::from_chars(tag.data() + space + 1, tag.data() + tag.size(), n);
  return n;
}

Clock::time_point deadline_after(std::chrono::milliseconds timeout,
                                 std::chrono::milliseconds fallback) {
  return Clock::now() + (timeout.count() > 0 ? timeout : fallback);
}

}  // namespace

int connect_tcp(const std::string& host, std::uint16_t port, Clock::time_point deadline) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* list = nullptr;
  const std::string service = std::to_string(port);
  if (const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &list); rc != 0) {
    throw Error(ErrorCode::connect_failed,
                "cannot resolve server " + host + ": " + ::gai_strerror(rc));
  }
  std::string last = "no address";
  for (addrinfo* a = list; a != nullptr; a = a->ai_next) {
    const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      last = std::strerror(errno);
      continue;
    }
    int rc = ::connect(fd, a->ai_addr, a->ai_addrlen);
    if (rc != 0 && errno == EINPROGRESS) {
      pollfd p{fd, POLLOUT, 0};
      const int ready = ::poll(&p, 1, ms_left(deadline));
      if (ready == 1) {
        int err = 0;
        socklen_t len = sizeof err;
        ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len);
        rc = err == 0 ? 0 : -1;
        errno = err;
      } else {
        rc = -1;
        if (ready == 0) errno = ETIMEDOUT;
      }
    }
    if (rc == 0) {
      ::freeaddrinfo(list);
      const int one = 1;
      ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      ::setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
      return fd;
    }
    last = std::strerror(errno);
    ::close(fd);
  }
  ::freeaddrinfo(list);
  throw Error(ErrorCode::connect_failed,
              "cannot connect to server " + host + ":" + service + ": " + last);
}

// ---- BackendConnection -----------------------------------------------------------------------

std::unique_ptr<BackendConnection> BackendConnection::open(const BackendTarget& target,
                                                           std::chrono::milliseconds timeout) {
  auto shared = std::make_shared<const BackendTarget>(target);
  std::unique_ptr<BackendConnection> c(new BackendConnection(shared));
  const auto deadline = deadline_after(timeout, std::chrono::seconds(15));
  c->fd_ = connect_tcp(target.host, target.port, deadline);
  c->login(deadline);
  return c;
}

asio::posix::stream_descriptor& BackendConnection::socket_on(const asio::any_io_executor& ex) {
  const void* home = &asio::query(ex, asio::execution::context);
  if (!socket_ || socket_home_ != home) {
    if (socket_) socket_->release();  // leaves the other loop's epoll set; the fd stays open
    socket_.emplace(ex, fd_);
    socket_home_ = home;
  }
  return *socket_;
}

BackendConnection::~BackendConnection() {
  if (limit_) limit_->give_back();
  if (socket_) socket_->release();
  if (fd_ >= 0) {
    if (!broken_) {
      std::string bye;
      pg::put_terminate(bye);
      [[maybe_unused]] const auto n = ::send(fd_, bye.data(), bye.size(), MSG_NOSIGNAL);
    }
    ::close(fd_);
  }
}

void BackendConnection::lost(const std::string& what) {
  broken_ = true;
  throw Error(ErrorCode::connection_lost, "server connection lost: " + what);
}

void BackendConnection::send_all(const std::string& bytes, Deadline deadline) {
  std::size_t at = 0;
  while (at < bytes.size()) {
    const ssize_t n = ::send(fd_, bytes.data() + at, bytes.size() - at, MSG_NOSIGNAL);
    if (n > 0) {
      at += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      pollfd p{fd_, POLLOUT, 0};
      if (::poll(&p, 1, ms_left(deadline)) <= 0) lost("timed out writing");
      continue;
    }
    lost(std::strerror(errno));
  }
}

pg::Message BackendConnection::next_message(Deadline deadline) {
  while (true) {
    std::size_t size = 0;
    if (in_at_ > 0 && in_at_ == in_.size()) {
      in_.clear();
      in_at_ = 0;
    }
    try {
      if (auto m =
              pg::read_message(std::string_view(in_).substr(in_at_), &size, target_->max_message)) {
        in_at_ += size;
        return *m;
      }
    } catch (const pg::ProtocolError& e) {
      lost(e.what());
    }
    if (in_at_ > 0) {
      in_.erase(0, in_at_);
      in_at_ = 0;
    }
    char buf[16384];
    const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n > 0) {
      in_.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    if (n == 0) lost("the server closed the connection");
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, ms_left(deadline)) <= 0) lost("timed out waiting for the server");
      continue;
    }
    lost(std::strerror(errno));
  }
}

void BackendConnection::login(Deadline deadline) {
  const BackendTarget& t = *target_;
  std::vector<std::pair<std::string, std::string>> params;
  params.emplace_back("user", t.user);
  params.emplace_back("database", t.dbname);
  for (const auto& p : t.startup_params)
    if (p.first != "user" && p.first != "database") params.push_back(p);
  std::string out;
  pg::put_startup_message(out, params);
  send_all(out, deadline);

  std::unique_ptr<ScramClient> scram;
  try {
    while (true) {
      const pg::Message m = next_message(deadline);
      switch (m.type) {
        case pg::be::kAuthentication: {
          const pg::AuthRequest r = pg::parse_authentication(m.body);
          out.clear();
          switch (r.code) {
            case pg::AuthCode::ok:
              break;
            case pg::AuthCode::cleartext:
              if (t.password.rfind("md5", 0) == 0 && t.password.size() == 35)
                throw Error(ErrorCode::auth_failed,
                            "the server asks for a cleartext password; only an md5 hash is known "
                            "for user " +
                                t.user);
              pg::put_password_message(out, t.password);
              break;
            case pg::AuthCode::md5: {
              const bool hashed = t.password.rfind("md5", 0) == 0 && t.password.size() == 35;
              pg::put_password_message(
                  out, md5_response(hashed ? t.password : md5_hash(t.user, t.password), r.salt));
              break;
            }
            case pg::AuthCode::sasl: {
              bool found = false;
              for (const auto& mech : r.mechanisms) found = found || mech == "SCRAM-SHA-256";
              if (!found)
                throw Error(ErrorCode::auth_failed,
                            "the server offers no SASL mechanism reservoird supports");
              scram = std::make_unique<ScramClient>(t.user, t.password);
              pg::put_sasl_initial_response(out, "SCRAM-SHA-256", scram->first());
              break;
            }
            case pg::AuthCode::sasl_continue:
              if (!scram) throw Error(ErrorCode::auth_failed, "unexpected SASLContinue");
              pg::put_sasl_response(out, scram->final(r.data));
              break;
            case pg::AuthCode::sasl_final:
              if (!scram) throw Error(ErrorCode::auth_failed, "unexpected SASLFinal");
              scram->verify(r.data);
              break;
            default:
              throw Error(ErrorCode::auth_failed,
                          "the server asks for an authentication method reservoird does not "
                          "support (" +
                              std::to_string(static_cast<int>(r.code)) + ")");
          }
          if (!out.empty()) send_all(out, deadline);
          break;
        }
        case pg::be::kParameterStatus: {
          auto [name, value] = pg::parse_parameter_status(m.body);
          params_[std::move(name)] = std::move(value);
          break;
        }
        case pg::be::kBackendKeyData:
          key_ = pg::parse_backend_key_data(m.body);
          break;
        case pg::be::kReadyForQuery:
          status_ = pg::parse_ready_for_query(m.body);
          return;
        case pg::be::kErrorResponse: {
          const pg::ErrorFields f = pg::parse_error_fields(m.body);
          broken_ = true;
          const bool auth = f.sqlstate.rfind("28", 0) == 0;
          throw Error(auth ? ErrorCode::auth_failed : ErrorCode::connect_failed,
                      "server refused the connection: " + f.message, {f.sqlstate});
        }
        case pg::be::kNoticeResponse:
          break;
        default:
          lost(std::string("unexpected message '") + m.type + "' during login");
      }
    }
  } catch (const AuthError& e) {
    broken_ = true;
    throw Error(ErrorCode::auth_failed, std::string("server authentication: ") + e.what());
  } catch (const pg::ProtocolError& e) {
    broken_ = true;
    throw Error(ErrorCode::connect_failed, std::string("server login: ") + e.what());
  }
}

std::uint64_t BackendConnection::simple(std::string_view sql, std::chrono::milliseconds timeout) {
  if (broken_) throw Error(ErrorCode::connection_lost, "server connection is broken");
  const auto deadline = deadline_after(timeout, std::chrono::seconds(30));
  std::string out;
  pg::put_query(out, sql);
  send_all(out, deadline);
  std::uint64_t affected = 0;
  std::optional<pg::ErrorFields> error;
  try {
    while (true) {
      const pg::Message m = next_message(deadline);
      switch (m.type) {
        case pg::be::kCommandComplete:
          affected = affected_from_tag(pg::parse_command_complete(m.body));
          break;
        case pg::be::kErrorResponse:
          error = pg::parse_error_fields(m.body);
          break;
        case pg::be::kParameterStatus: {
          auto [name, value] = pg::parse_parameter_status(m.body);
          params_[std::move(name)] = std::move(value);
          break;
        }
        case pg::be::kCopyInResponse: {  // never from our statements; refuse politely
          std::string fail;
          fail.push_back(pg::fe::kCopyFail);
          fail.append(
              "\0\0\0\x0a"
              "no copy\0",
              12);
          send_all(fail, deadline);
          break;
        }
        case pg::be::kReadyForQuery:
          status_ = pg::parse_ready_for_query(m.body);
          if (error) throw Error(ErrorCode::query_failed, error->message, {error->sqlstate});
          return affected;
        default:
          break;
      }
    }
  } catch (const pg::ProtocolError& e) {
    lost(e.what());
  }
}

std::uint64_t BackendConnection::execute_params(std::string_view sql,
                                                std::span<const Value> params) {
  if (!params.empty())
    throw Error(ErrorCode::unsupported, "reservoird server connections take no parameters");
  return simple(sql, {});
}

ResultSet BackendConnection::query_params(std::string_view sql, std::span<const Value> params) {
  return ResultSet({}, {}, execute_params(sql, params));
}

void BackendConnection::ping(std::chrono::milliseconds timeout) {
  try {
    simple(target_->check_query.empty() ? std::string_view(";") : target_->check_query, timeout);
  } catch (const Error& e) {
    broken_ = true;
    throw Error(ErrorCode::connection_lost, std::string("server check failed: ") + e.what());
  }
}

void BackendConnection::reset() {
  if (status_ != 'I') simple("ROLLBACK", {});
  if (!target_->reset_query.empty()) simple(target_->reset_query, {});
}

// ---- BackendDriver ---------------------------------------------------------------------------

std::unique_ptr<Connection> BackendDriver::connect(const Dsn&, std::chrono::milliseconds timeout) {
  if (!limit_) return BackendConnection::open(*target(), timeout);
  if (!limit_->try_take())
    throw Error(ErrorCode::connect_failed,
                "max_db_connections (" + std::to_string(limit_->cap.load()) + ") reached");
  std::unique_ptr<BackendConnection> c;
  try {
    c = BackendConnection::open(*target(), timeout);
  } catch (...) {
    limit_->give_back();
    throw;
  }
  c->hold_place(limit_);
  return c;
}

void BackendDriver::set_target(std::shared_ptr<const BackendTarget> target) {
  std::lock_guard lock(mutex_);
  target_ = std::move(target);
}

std::shared_ptr<const BackendTarget> BackendDriver::target() const {
  std::lock_guard lock(mutex_);
  return target_;
}

void send_cancel(const std::string& host, std::uint16_t port, pg::BackendKey key,
                 std::chrono::milliseconds timeout) {
  try {
    const auto deadline = Clock::now() + timeout;
    const int fd = connect_tcp(host, port, deadline);
    std::string out;
    pg::put_cancel_request(out, key);
    ::send(fd, out.data(), out.size(), MSG_NOSIGNAL);
    // The server closes the connection once it has read the request.
    pollfd p{fd, POLLIN, 0};
    ::poll(&p, 1, ms_left(deadline));
    ::close(fd);
  } catch (...) {
  }
}

}  // namespace reservoir::server
