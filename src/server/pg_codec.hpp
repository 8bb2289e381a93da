// src/server/pg_codec.hpp: the PostgreSQL frontend/backend protocol 3 codec for reservoird.
// Pure code (no sockets, no Asio): frame readers for both phases, parsers, builders.
//
//   pg::StartupReader r(pg::kDefaultMaxMessage);
//   r.feed(bytes, n);                          // throws ProtocolError on a bad length
//   if (auto frame = r.next()) { auto s = pg::parse_startup(*frame); ... }
//
//   pg::MessageScanner scan(max, pg::types_bitmap("ZS"));   // capture the bodies of Z and S
//   scan.feed(data, n, [&](char type, std::string_view body, bool complete_body) { ... });
//
// Thread safety: none needed; every object is used by one session at a time.
#pragma once

#include <algorithm>
#include <array>
#include <bitset>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace reservoir::server::pg {

// A malformed or oversize message. what() is safe to send to the client; sqlstate() is the
// SQLSTATE for the ErrorResponse (08P01 protocol_violation unless said otherwise).
class ProtocolError : public std::runtime_error {
 public:
  explicit ProtocolError(const std::string& message, std::string sqlstate = "08P01")
      : std::runtime_error(message), sqlstate_(std::move(sqlstate)) {}
  const std::string& sqlstate() const noexcept { return sqlstate_; }

 private:
  std::string sqlstate_;
};

inline constexpr std::uint32_t kProtocol3 = 196608;  // 3.0
inline constexpr std::uint32_t kCancelRequestCode = 80877102;
inline constexpr std::uint32_t kSslRequestCode = 80877103;
inline constexpr std::uint32_t kGssEncRequestCode = 80877104;
// PostgreSQL's own limit for a startup packet is 10000 bytes; normal messages default to 1 GiB
// there, reservoird takes 64 MiB unless configured otherwise.
inline constexpr std::size_t kMaxStartupMessage = 10'000;
inline constexpr std::size_t kDefaultMaxMessage = 64u << 20;

// Frontend message types.
namespace fe {
inline constexpr char kBind = 'B', kClose = 'C', kCopyData = 'd', kCopyDone = 'c', kCopyFail = 'f',
                      kDescribe = 'D', kExecute = 'E', kFlush = 'H', kFunctionCall = 'F',
                      kParse = 'P', kPassword = 'p', kQuery = 'Q', kSync = 'S', kTerminate = 'X';
}  // namespace fe
// Backend message types.
namespace be {
inline constexpr char kAuthentication = 'R', kBackendKeyData = 'K', kBindComplete = '2',
                      kCloseComplete = '3', kCommandComplete = 'C', kCopyInResponse = 'G',
                      kCopyOutResponse = 'H', kCopyBothResponse = 'W', kDataRow = 'D',
                      kEmptyQueryResponse = 'I', kErrorResponse = 'E', kNoData = 'n',
                      kNoticeResponse = 'N', kNotificationResponse = 'A',
                      kParameterDescription = 't', kParameterStatus = 'S', kParseComplete = '1',
                      kPortalSuspended = 's', kReadyForQuery = 'Z', kRowDescription = 'T';
}  // namespace be

// Authentication request codes (the int32 after 'R').
enum class AuthCode : std::int32_t {
  ok = 0,
  kerberos_v5 = 2,
  cleartext = 3,
  md5 = 5,
  gss = 7,
  gss_continue = 8,
  sspi = 9,
  sasl = 10,
  sasl_continue = 11,
  sasl_final = 12,
};

// ---- startup phase -------------------------------------------------------------------------

struct StartupPacket {
  enum class Kind : std::uint8_t { startup, ssl_request, gssenc_request, cancel_request };
  Kind kind = Kind::startup;
  std::uint32_t protocol = 0;                               // startup: kProtocol3
  std::vector<std::pair<std::string, std::string>> params;  // startup, in order
  std::int32_t cancel_pid = 0;                              // cancel_request
  std::int32_t cancel_key = 0;
  // The value of a startup parameter, or nullptr.
  const std::string* param(std::string_view name) const noexcept;
};

// Parses one complete startup-phase frame (length prefix included). Throws ProtocolError for an
// unknown request code, a protocol other than 3.x, a missing "user", or malformed parameters.
StartupPacket parse_startup(std::string_view frame);

// Collects bytes until a whole startup-phase frame (int32 length, no type byte) is there.
class StartupReader {
 public:
  explicit StartupReader(std::size_t max_message = kMaxStartupMessage) : max_(max_message) {}
  // Appends bytes. Throws ProtocolError as soon as a length below 8 or above the limit is seen.
  void feed(const char* data, std::size_t n);
  // The next complete frame (valid until the next feed/next call), or nullopt.
  std::optional<std::string_view> next();
  // Bytes fed after the frames returned so far (a client may pipeline its first messages).
  std::string_view rest() const noexcept { return std::string_view(buffer_).substr(consumed_); }

 private:
  std::size_t max_;
  std::string buffer_;
  std::size_t consumed_ = 0;
};

// ---- normal phase: incremental framing ------------------------------------------------------

// A set of message types, e.g. types_bitmap("ZSE"). Types are ASCII (a byte of 128 or more is
// never in a set).
using TypeSet = std::bitset<128>;
TypeSet types_bitmap(std::string_view types);

// Scans a byte stream of normal-phase messages (type byte, int32 length including itself, body)
// as it arrives in arbitrary chunks, without copying what it does not need: only the bodies of
// message types in `capture` are gathered (in one reused buffer). For each message, when its last
// byte has been fed, calls on_message(type, body, captured) with the body when captured, an
// empty view otherwise. Throws ProtocolError for a length below 4 or above max_message (before
// any allocation); the scanner is then unusable.
//
// kCapture false (FrameScanner): frames only, never a body (16 bytes instead of 64: reservoird
// keeps one per client for what the client sends, and most clients are idle).
template <bool kCapture>
class BasicMessageScanner {
 public:
  explicit BasicMessageScanner(std::size_t max_message = kDefaultMaxMessage)
      : max_(static_cast<std::uint32_t>(std::min<std::size_t>(max_message, 0xffffffffu))) {}
  BasicMessageScanner(std::size_t max_message, TypeSet capture)
    requires kCapture
      : BasicMessageScanner(max_message) {
    if constexpr (kCapture) capture_.types = capture;  // (a discarded statement for clang 14)
  }

  template <class OnMessage>
  void feed(const char* data, std::size_t n, OnMessage&& on_message);

  // True between messages (no partial header or body pending).
  bool at_boundary() const noexcept { return header_have_ == 0 && remaining_ == 0; }
  // In on_message: the first byte of the message's body (0 for an empty body), captured or not.
  // (A Parse's first byte tells a named statement from the unnamed one.)
  unsigned char first_body_byte() const noexcept { return first_; }
  void reset() noexcept {
    header_have_ = 0;
    remaining_ = 0;
    if constexpr (kCapture) capture_.body.clear();
  }

 private:
  void start_message();  // header_ complete: checks the length, sets remaining_/capturing_

  struct Capture {
    TypeSet types;
    std::string body;
  };
  struct NoCapture {};
  // Narrow and packed: every client session has two scanners.
  [[no_unique_address]] std::conditional_t<kCapture, Capture, NoCapture> capture_;
  std::uint32_t max_;
  std::uint32_t remaining_ = 0;  // body bytes still to come (a length is 32 bits)
  std::array<unsigned char, 5> header_{};
  std::uint8_t header_have_ = 0;  // 0-5: header bytes seen; 6: the body has begun
  bool capturing_ = false;        // always false without kCapture
  unsigned char first_ = 0;
};
using MessageScanner = BasicMessageScanner<true>;
using FrameScanner = BasicMessageScanner<false>;
extern template class BasicMessageScanner<true>;
extern template class BasicMessageScanner<false>;

// Reads whole messages out of a buffer: for code that has the full message in hand (startup of
// server connections, the admin console, tests, the fuzzer).
struct Message {
  char type = 0;
  std::string_view body;  // without type and length
};
// The first complete message in data (its total size in *size), or nullopt if data holds only a
// part of one. Throws ProtocolError for a bad length (as MessageScanner).
std::optional<Message> read_message(std::string_view data, std::size_t* size,
                                    std::size_t max_message = kDefaultMaxMessage);

// ---- parsers (bodies without type and length) -----------------------------------------------

struct ErrorFields {
  std::string severity;                           // S (localised) / V
  std::string sqlstate;                           // C
  std::string message;                            // M
  std::string detail;                             // D
  std::string hint;                               // H
  std::vector<std::pair<char, std::string>> all;  // every field in order
};
ErrorFields parse_error_fields(std::string_view body);  // ErrorResponse and NoticeResponse

char parse_ready_for_query(std::string_view body);  // 'I', 'T' or 'E'
std::pair<std::string, std::string> parse_parameter_status(std::string_view body);
struct BackendKey {
  std::int32_t pid = 0;
  std::int32_t key = 0;
};
BackendKey parse_backend_key_data(std::string_view body);

struct AuthRequest {
  AuthCode code = AuthCode::ok;
  std::array<unsigned char, 4> salt{};  // md5
  std::vector<std::string> mechanisms;  // sasl
  std::string data;                     // sasl_continue / sasl_final
};
AuthRequest parse_authentication(std::string_view body);

std::string_view parse_query(std::string_view body);     // Query's SQL text
std::string_view parse_password(std::string_view body);  // PasswordMessage (cleartext / md5)
struct SaslInitial {
  std::string_view mechanism;
  std::string_view data;  // empty when the length is -1
};
SaslInitial parse_sasl_initial_response(std::string_view body);
// CommandComplete's tag (e.g. "SELECT 1").
std::string_view parse_command_complete(std::string_view body);

// ---- builders (append one whole message to out) ---------------------------------------------

void put_auth_ok(std::string& out);
void put_auth_cleartext(std::string& out);
void put_auth_md5(std::string& out, std::array<unsigned char, 4> salt);
void put_auth_sasl(std::string& out, const std::vector<std::string>& mechanisms);
void put_auth_sasl_continue(std::string& out, std::string_view data);
void put_auth_sasl_final(std::string& out, std::string_view data);
void put_parameter_status(std::string& out, std::string_view name, std::string_view value);
void put_backend_key_data(std::string& out, BackendKey key);
void put_ready_for_query(std::string& out, char status);
// severity: "ERROR", "FATAL", "WARNING", "NOTICE", ...
void put_error_response(std::string& out, std::string_view severity, std::string_view sqlstate,
                        std::string_view message);
void put_notice_response(std::string& out, std::string_view severity, std::string_view sqlstate,
                         std::string_view message);
// Columns of type text (OID 25).
void put_row_description(std::string& out, const std::vector<std::string>& columns);
void put_data_row(std::string& out, const std::vector<std::optional<std::string>>& values);
void put_command_complete(std::string& out, std::string_view tag);
void put_empty_query_response(std::string& out);

// Towards servers.
void put_startup_message(std::string& out,
                         const std::vector<std::pair<std::string, std::string>>& params);
void put_cancel_request(std::string& out, BackendKey key);
void put_ssl_request(std::string& out);
void put_sasl_initial_response(std::string& out, std::string_view mechanism, std::string_view data);
void put_sasl_response(std::string& out, std::string_view data);
void put_password_message(std::string& out, std::string_view password);
void put_query(std::string& out, std::string_view sql);
void put_sync(std::string& out);
void put_terminate(std::string& out);

// ---- inline: the scanner's hot loop ----------------------------------------------------------

template <bool kCapture>
template <class OnMessage>
void BasicMessageScanner<kCapture>::feed(const char* data, std::size_t n,
                                         OnMessage&& on_message) {
  const char* const start = data;
  // on_message(type, body, captured) or on_message(type, body, captured, end), where end is the
  // offset in this chunk just past the message's last byte.
  auto call = [&](char type, std::string_view body, bool captured) {
    if constexpr (std::is_invocable_v<OnMessage&, char, std::string_view, bool, std::size_t>)
      on_message(type, body, captured, static_cast<std::size_t>(data - start));
    else
      on_message(type, body, captured);
  };
  while (n > 0) {
    if (remaining_ == 0 && header_have_ < 5) {
      // Fast path: a whole header in the input.
      if (header_have_ == 0 && n >= 5) {
        for (int i = 0; i < 5; ++i) header_[i] = static_cast<unsigned char>(data[i]);
        data += 5;
        n -= 5;
        header_have_ = 5;
      } else {
        while (header_have_ < 5 && n > 0) {
          header_[header_have_++] = static_cast<unsigned char>(*data++);
          --n;
        }
        if (header_have_ < 5) return;
      }
      start_message();
      if (remaining_ == 0) {  // an empty body: complete already
        header_have_ = 0;
        call(static_cast<char>(header_[0]), std::string_view(), kCapture && capturing_);
        continue;
      }
    }
    const std::uint32_t take = remaining_ < n ? remaining_ : static_cast<std::uint32_t>(n);
    if (header_have_ == 5 && take > 0) {  // the body's first bytes (none yet if n is 0)
      first_ = static_cast<unsigned char>(data[0]);
      header_have_ = 6;
    }
    if constexpr (kCapture) {
      if (capturing_) capture_.body.append(data, take);
    }
    data += take;
    n -= take;
    remaining_ -= take;
    if (remaining_ == 0) {
      header_have_ = 0;
      if constexpr (kCapture) {
        call(static_cast<char>(header_[0]),
             capturing_ ? std::string_view(capture_.body) : std::string_view(), capturing_);
      } else {
        call(static_cast<char>(header_[0]), std::string_view(), false);
      }
    }
  }
}

}  // namespace reservoir::server::pg
