// src/server/pg_codec.cpp: PostgreSQL protocol 3 framing, parsers and builders (pure code).
#include "server/pg_codec.hpp"

#include <cstring>

namespace reservoir::server::pg {
namespace {

std::uint32_t get_u32(const char* p) noexcept {
  const auto* u = reinterpret_cast<const unsigned char*>(p);
  return (std::uint32_t{u[0]} << 24) | (std::uint32_t{u[1]} << 16) | (std::uint32_t{u[2]} << 8) |
         std::uint32_t{u[3]};
}

void put_u32(std::string& out, std::uint32_t v) {
  const char b[4] = {static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
  out.append(b, 4);
}
void put_u16(std::string& out, std::uint16_t v) {
  const char b[2] = {static_cast<char>(v >> 8), static_cast<char>(v)};
  out.append(b, 2);
}
void put_cstr(std::string& out, std::string_view s) {
  out.append(s.data(), s.size());
  out.push_back('\0');
}

// Starts a message of `type` in out; finish() writes its length.
std::size_t begin(std::string& out, char type) {
  out.push_back(type);
  const std::size_t at = out.size();
  out.append(4, '\0');
  return at;
}
void finish(std::string& out, std::size_t at) {
  const auto len = static_cast<std::uint32_t>(out.size() - at);
  out[at] = static_cast<char>(len >> 24);
  out[at + 1] = static_cast<char>(len >> 16);
  out[at + 2] = static_cast<char>(len >> 8);
  out[at + 3] = static_cast<char>(len);
}

// A cursor over a message body; every read checks the bounds.
class Cursor {
 public:
  explicit Cursor(std::string_view body) : s_(body) {}
  std::int32_t i32(const char* what) {
    if (s_.size() - pos_ < 4) throw ProtocolError(std::string("truncated ") + what);
    const auto v = static_cast<std::int32_t>(get_u32(s_.data() + pos_));
    pos_ += 4;
    return v;
  }
  std::string_view cstr(const char* what) {
    const std::size_t end = s_.find('\0', pos_);
    if (end == std::string_view::npos) throw ProtocolError(std::string("unterminated ") + what);
    const std::string_view v = s_.substr(pos_, end - pos_);
    pos_ = end + 1;
    return v;
  }
  std::string_view bytes(std::size_t n, const char* what) {
    if (s_.size() - pos_ < n) throw ProtocolError(std::string("truncated ") + what);
    const std::string_view v = s_.substr(pos_, n);
    pos_ += n;
    return v;
  }
  std::string_view rest() {
    const std::string_view v = s_.substr(pos_);
    pos_ = s_.size();
    return v;
  }
  bool done() const noexcept { return pos_ >= s_.size(); }
  char peek() const noexcept { return pos_ < s_.size() ? s_[pos_] : '\0'; }
  void skip(std::size_t n) { pos_ += n; }

 private:
  std::string_view s_;
  std::size_t pos_ = 0;
};

}  // namespace

// ---- startup ---------------------------------------------------------------------------------

const std::string* StartupPacket::param(std::string_view name) const noexcept {
  for (const auto& [k, v] : params)
    if (k == name) return &v;
  return nullptr;
}

StartupPacket parse_startup(std::string_view frame) {
  if (frame.size() < 8) throw ProtocolError("invalid startup packet length");
  if (get_u32(frame.data()) != frame.size()) throw ProtocolError("invalid startup packet length");
  StartupPacket p;
  const std::uint32_t code = get_u32(frame.data() + 4);
  if (code == kSslRequestCode || code == kGssEncRequestCode) {
    if (frame.size() != 8) throw ProtocolError("invalid length of encryption request");
    p.kind = code == kSslRequestCode ? StartupPacket::Kind::ssl_request
                                     : StartupPacket::Kind::gssenc_request;
    return p;
  }
  if (code == kCancelRequestCode) {
    if (frame.size() != 16) throw ProtocolError("invalid length of cancel request");
    p.kind = StartupPacket::Kind::cancel_request;
    p.cancel_pid = static_cast<std::int32_t>(get_u32(frame.data() + 8));
    p.cancel_key = static_cast<std::int32_t>(get_u32(frame.data() + 12));
    return p;
  }
  if ((code >> 16) != 3) {
    throw ProtocolError("unsupported frontend protocol " + std::to_string(code >> 16) + "." +
                            std::to_string(code & 0xffff) + ": server supports 3.0",
                        "0A000");
  }
  p.protocol = code;
  Cursor c(frame.substr(8));
  while (true) {
    if (c.done()) throw ProtocolError("startup packet does not end with a terminator");
    if (c.peek() == '\0') {
      c.skip(1);
      break;
    }
    const std::string_view name = c.cstr("startup parameter name");
    const std::string_view value = c.cstr("startup parameter value");
    p.params.emplace_back(std::string(name), std::string(value));
  }
  if (!c.done()) throw ProtocolError("extra bytes after the startup packet's terminator");
  if (p.param("user") == nullptr || p.param("user")->empty())
    throw ProtocolError("no PostgreSQL user name specified in startup packet", "28000");
  return p;
}

void StartupReader::feed(const char* data, std::size_t n) {
  if (consumed_ > 0 && consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  }
  buffer_.append(data, n);
  if (buffer_.size() - consumed_ >= 4) {
    const std::uint32_t len = get_u32(buffer_.data() + consumed_);
    if (len < 8 || len > max_) throw ProtocolError("invalid startup packet length");
  }
}

std::optional<std::string_view> StartupReader::next() {
  const std::size_t have = buffer_.size() - consumed_;
  if (have < 4) return std::nullopt;
  const std::uint32_t len = get_u32(buffer_.data() + consumed_);
  if (len < 8 || len > max_) throw ProtocolError("invalid startup packet length");
  if (have < len) return std::nullopt;
  const std::string_view frame(buffer_.data() + consumed_, len);
  consumed_ += len;
  return frame;
}

// ---- normal phase ----------------------------------------------------------------------------

TypeSet types_bitmap(std::string_view types) {
  TypeSet s;
  for (const char t : types)
    if (static_cast<unsigned char>(t) < s.size()) s.set(static_cast<unsigned char>(t));
  return s;
}

template <bool kCapture>
void BasicMessageScanner<kCapture>::start_message() {
  const std::uint32_t len = get_u32(reinterpret_cast<const char*>(header_.data()) + 1);
  if (len < 4 || len - 4 > max_) {
    header_have_ = 0;
    remaining_ = 0;
    throw ProtocolError(len < 4 ? "invalid message length"
                                : "message of " + std::to_string(len) + " bytes exceeds the limit");
  }
  remaining_ = len - 4;
  first_ = 0;
  if constexpr (kCapture) {
    capturing_ = header_[0] < capture_.types.size() && capture_.types.test(header_[0]);
    if (capturing_) capture_.body.clear();
  }
}
template class BasicMessageScanner<true>;
template class BasicMessageScanner<false>;

std::optional<Message> read_message(std::string_view data, std::size_t* size,
                                    std::size_t max_message) {
  if (data.size() < 5) return std::nullopt;
  const std::uint32_t len = get_u32(data.data() + 1);
  if (len < 4 || len - 4 > max_message) throw ProtocolError("invalid message length");
  if (data.size() - 1 < len) return std::nullopt;
  *size = std::size_t{len} + 1;
  return Message{data[0], data.substr(5, len - 4)};
}

// ---- parsers ---------------------------------------------------------------------------------

ErrorFields parse_error_fields(std::string_view body) {
  ErrorFields f;
  Cursor c(body);
  while (!c.done()) {
    const char code = c.peek();
    c.skip(1);
    if (code == '\0') break;
    const std::string value(c.cstr("error field"));
    switch (code) {
      case 'S':
        if (f.severity.empty()) f.severity = value;
        break;
      case 'V':
        f.severity = value;
        break;
      case 'C':
        f.sqlstate = value;
        break;
      case 'M':
        f.message = value;
        break;
      case 'D':
        f.detail = value;
        break;
      case 'H':
        f.hint = value;
        break;
      default:
        break;
    }
    f.all.emplace_back(code, value);
  }
  return f;
}

char parse_ready_for_query(std::string_view body) {
  if (body.size() != 1 || (body[0] != 'I' && body[0] != 'T' && body[0] != 'E'))
    throw ProtocolError("invalid ReadyForQuery");
  return body[0];
}

std::pair<std::string, std::string> parse_parameter_status(std::string_view body) {
  Cursor c(body);
  std::string name(c.cstr("parameter name"));
  std::string value(c.cstr("parameter value"));
  return {std::move(name), std::move(value)};
}

BackendKey parse_backend_key_data(std::string_view body) {
  if (body.size() != 8) throw ProtocolError("invalid BackendKeyData");
  return {static_cast<std::int32_t>(get_u32(body.data())),
          static_cast<std::int32_t>(get_u32(body.data() + 4))};
}

AuthRequest parse_authentication(std::string_view body) {
  Cursor c(body);
  AuthRequest r;
  r.code = static_cast<AuthCode>(c.i32("authentication request"));
  switch (r.code) {
    case AuthCode::md5: {
      const std::string_view s = c.bytes(4, "md5 salt");
      std::memcpy(r.salt.data(), s.data(), 4);
      break;
    }
    case AuthCode::sasl:
      while (!c.done()) {
        const std::string_view m = c.cstr("SASL mechanism");
        if (m.empty()) break;
        r.mechanisms.emplace_back(m);
      }
      break;
    case AuthCode::sasl_continue:
    case AuthCode::sasl_final:
      r.data = std::string(c.rest());
      break;
    default:
      break;
  }
  return r;
}

std::string_view parse_query(std::string_view body) {
  Cursor c(body);
  return c.cstr("query string");
}

std::string_view parse_password(std::string_view body) {
  Cursor c(body);
  return c.cstr("password");
}

SaslInitial parse_sasl_initial_response(std::string_view body) {
  Cursor c(body);
  SaslInitial s;
  s.mechanism = c.cstr("SASL mechanism");
  const std::int32_t len = c.i32("SASL data length");
  if (len >= 0) s.data = c.bytes(static_cast<std::size_t>(len), "SASL data");
  return s;
}

std::string_view parse_command_complete(std::string_view body) {
  Cursor c(body);
  return c.cstr("command tag");
}

// ---- builders --------------------------------------------------------------------------------

namespace {
void put_auth(std::string& out, AuthCode code, std::string_view extra) {
  const std::size_t at = begin(out, be::kAuthentication);
  put_u32(out, static_cast<std::uint32_t>(code));
  out.append(extra.data(), extra.size());
  finish(out, at);
}
void put_fields(std::string& out, char type, std::string_view severity, std::string_view sqlstate,
                std::string_view message) {
  const std::size_t at = begin(out, type);
  out.push_back('S');
  put_cstr(out, severity);
  out.push_back('V');
  put_cstr(out, severity);
  out.push_back('C');
  put_cstr(out, sqlstate);
  out.push_back('M');
  put_cstr(out, message);
  out.push_back('\0');
  finish(out, at);
}
}  // namespace

void put_auth_ok(std::string& out) { put_auth(out, AuthCode::ok, {}); }
void put_auth_cleartext(std::string& out) { put_auth(out, AuthCode::cleartext, {}); }
void put_auth_md5(std::string& out, std::array<unsigned char, 4> salt) {
  put_auth(out, AuthCode::md5, std::string_view(reinterpret_cast<const char*>(salt.data()), 4));
}
void put_auth_sasl(std::string& out, const std::vector<std::string>& mechanisms) {
  const std::size_t at = begin(out, be::kAuthentication);
  put_u32(out, static_cast<std::uint32_t>(AuthCode::sasl));
  for (const auto& m : mechanisms) put_cstr(out, m);
  out.push_back('\0');
  finish(out, at);
}
void put_auth_sasl_continue(std::string& out, std::string_view data) {
  put_auth(out, AuthCode::sasl_continue, data);
}
void put_auth_sasl_final(std::string& out, std::string_view data) {
  put_auth(out, AuthCode::sasl_final, data);
}
void put_parameter_status(std::string& out, std::string_view name, std::string_view value) {
  const std::size_t at = begin(out, be::kParameterStatus);
  put_cstr(out, name);
  put_cstr(out, value);
  finish(out, at);
}
void put_backend_key_data(std::string& out, BackendKey key) {
  const std::size_t at = begin(out, be::kBackendKeyData);
  put_u32(out, static_cast<std::uint32_t>(key.pid));
  put_u32(out, static_cast<std::uint32_t>(key.key));
  finish(out, at);
}
void put_ready_for_query(std::string& out, char status) {
  const std::size_t at = begin(out, be::kReadyForQuery);
  out.push_back(status);
  finish(out, at);
}
void put_error_response(std::string& out, std::string_view severity, std::string_view sqlstate,
                        std::string_view message) {
  put_fields(out, be::kErrorResponse, severity, sqlstate, message);
}
void put_notice_response(std::string& out, std::string_view severity, std::string_view sqlstate,
                         std::string_view message) {
  put_fields(out, be::kNoticeResponse, severity, sqlstate, message);
}
void put_row_description(std::string& out, const std::vector<std::string>& columns) {
  const std::size_t at = begin(out, be::kRowDescription);
  put_u16(out, static_cast<std::uint16_t>(columns.size()));
  for (const auto& name : columns) {
    put_cstr(out, name);
    put_u32(out, 0);   // table OID
    put_u16(out, 0);   // column number
    put_u32(out, 25);  // text
    put_u16(out, static_cast<std::uint16_t>(-1));
    put_u32(out, static_cast<std::uint32_t>(-1));  // typmod
    put_u16(out, 0);                               // text format
  }
  finish(out, at);
}
void put_data_row(std::string& out, const std::vector<std::optional<std::string>>& values) {
  const std::size_t at = begin(out, be::kDataRow);
  put_u16(out, static_cast<std::uint16_t>(values.size()));
  for (const auto& v : values) {
    if (!v) {
      put_u32(out, static_cast<std::uint32_t>(-1));
    } else {
      put_u32(out, static_cast<std::uint32_t>(v->size()));
      out.append(*v);
    }
  }
  finish(out, at);
}
void put_command_complete(std::string& out, std::string_view tag) {
  const std::size_t at = begin(out, be::kCommandComplete);
  put_cstr(out, tag);
  finish(out, at);
}
void put_empty_query_response(std::string& out) {
  finish(out, begin(out, be::kEmptyQueryResponse));
}

void put_startup_message(std::string& out,
                         const std::vector<std::pair<std::string, std::string>>& params) {
  const std::size_t at = out.size();
  out.append(4, '\0');
  put_u32(out, kProtocol3);
  for (const auto& [k, v] : params) {
    put_cstr(out, k);
    put_cstr(out, v);
  }
  out.push_back('\0');
  finish(out, at);
}
void put_cancel_request(std::string& out, BackendKey key) {
  put_u32(out, 16);
  put_u32(out, kCancelRequestCode);
  put_u32(out, static_cast<std::uint32_t>(key.pid));
  put_u32(out, static_cast<std::uint32_t>(key.key));
}
void put_ssl_request(std::string& out) {
  put_u32(out, 8);
  put_u32(out, kSslRequestCode);
}
void put_sasl_initial_response(std::string& out, std::string_view mechanism,
                               std::string_view data) {
  const std::size_t at = begin(out, fe::kPassword);
  put_cstr(out, mechanism);
  put_u32(out, static_cast<std::uint32_t>(data.size()));
  out.append(data.data(), data.size());
  finish(out, at);
}
void put_sasl_response(std::string& out, std::string_view data) {
  const std::size_t at = begin(out, fe::kPassword);
  out.append(data.data(), data.size());
  finish(out, at);
}
void put_password_message(std::string& out, std::string_view password) {
  const std::size_t at = begin(out, fe::kPassword);
  put_cstr(out, password);
  finish(out, at);
}
void put_query(std::string& out, std::string_view sql) {
  const std::size_t at = begin(out, fe::kQuery);
  put_cstr(out, sql);
  finish(out, at);
}
void put_sync(std::string& out) { finish(out, begin(out, fe::kSync)); }
void put_terminate(std::string& out) { finish(out, begin(out, fe::kTerminate)); }

}  // namespace reservoir::server::pg
