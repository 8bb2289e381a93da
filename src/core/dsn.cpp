// src/core/dsn.cpp: parses data source names (URL forms, sqlite paths, odbc connection strings)
// and renders them back with every secret masked.
#include "reservoir/dsn.hpp"

#include <string>
#include <string_view>

#include "reservoir/error.hpp"

namespace reservoir {

namespace {

// Error messages say what is wrong and where, but quote the input only for parts that cannot hold
// a password (scheme, port, parameter names): a DSN often ends up in a log along with the error.
[[noreturn]] void fail(const std::string& what) {
  throw Error(ErrorCode::invalid_argument, "dsn: " + what);
}

char ascii_lower(char c) noexcept {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ascii_lower(c);
  return out;
}

bool istarts_with(std::string_view s, std::string_view prefix) noexcept {
  if (s.size() < prefix.size()) return false;
  for (std::size_t i = 0; i < prefix.size(); ++i) {
    if (ascii_lower(s[i]) != ascii_lower(prefix[i])) return false;
  }
  return true;
}

bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

std::string_view trim(std::string_view s) noexcept {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

int hex_value(char c) noexcept {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Decodes %XX escapes. '+' stays '+': DSNs are not HTML form data, and libpq agrees.
std::string decode(std::string_view s, const char* field) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] != '%') {
      out += s[i];
      continue;
    }
    const int hi = i + 2 < s.size() ? hex_value(s[i + 1]) : -1;
    const int lo = hi >= 0 ? hex_value(s[i + 2]) : -1;
    if (lo < 0) {
      fail(std::string("bad percent-escape in ") + field + " (expected % and two hex digits)");
    }
    out += static_cast<char>(hi * 16 + lo);
    i += 2;
  }
  return out;
}

// Percent-encodes what the parser would otherwise take for a delimiter (reserved), '%' itself,
// and spaces and control characters, so that redacted() text parses back to the same Dsn.
std::string encode(std::string_view s, std::string_view reserved) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f || c == '%' || reserved.find(c) != std::string_view::npos) {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    } else {
      out += c;
    }
  }
  return out;
}

// Parameters and ODBC attributes that carry secrets: libpq takes ?password= and ?sslpassword=,
// ODBC drivers take PWD= or PASSWORD=.
bool is_secret_key(std::string_view key) {
  const std::string k = lower(trim(key));
  return k == "pwd" || k == "passwd" || k.find("password") != std::string::npos;
}

void parse_query(std::string_view query, std::map<std::string, std::string>& params) {
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view pair = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (pair.empty()) continue;  // "a=1&&b=2" and a trailing '&' are harmless
    const std::size_t eq = pair.find('=');
    std::string key = decode(pair.substr(0, eq), "parameter name");
    if (key.empty()) fail("parameter with an empty name");
    std::string value = eq == std::string_view::npos
                            ? std::string()
                            : decode(pair.substr(eq + 1), "parameter value");
    params[std::move(key)] = std::move(value);  // the last of repeated keys wins, as in libpq
  }
}

std::uint16_t parse_port(std::string_view text) {
  unsigned long value = 0;
  bool ok = !text.empty() && text.size() <= 5;
  for (char c : text) {
    if (c < '0' || c > '9') {
      ok = false;
      break;
    }
    value = value * 10 + static_cast<unsigned long>(c - '0');
  }
  if (!ok || value < 1 || value > 65535) {
    fail("port '" + std::string(text) + "' is not a number in 1..65535");
  }
  return static_cast<std::uint16_t>(value);
}

void parse_host_port(std::string_view hp, Dsn& dsn) {
  // libpq's multi-host form ("h1:5432,h2:5433") is passed on whole: each host has its own port,
  // so there is no single port to extract and dsn.port stays 0.
  if (hp.find(',') != std::string_view::npos) {
    dsn.host = decode(hp, "host");
    return;
  }
  std::string_view port_text;
  bool has_port = false;
  if (!hp.empty() && hp.front() == '[') {
    const std::size_t close = hp.find(']');
    if (close == std::string_view::npos) {
      fail("host: '[' without ']' (IPv6 addresses are written [::1]:5432)");
    }
    dsn.host = decode(hp.substr(1, close - 1), "host");
    const std::string_view after = hp.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') fail("host: unexpected text after ']' (expected :port)");
      port_text = after.substr(1);
      has_port = true;
    }
  } else {
    const std::size_t colon = hp.find(':');
    if (colon != std::string_view::npos && hp.find(':', colon + 1) != std::string_view::npos) {
      fail("host: IPv6 addresses must be in brackets, e.g. [::1]:5432");
    }
    dsn.host = decode(hp.substr(0, colon), "host");
    if (colon != std::string_view::npos) {
      port_text = hp.substr(colon + 1);
      has_port = true;
    }
  }
  if (has_port) dsn.port = parse_port(port_text);
}

bool valid_scheme(std::string_view s) noexcept {
  if (s.empty() || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z'))) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '+' || c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

// "sqlite:///abs.db", "sqlite://rel.db", "sqlite::memory:", "sqlite://:memory:"; rest is the text
// after "sqlite:".
Dsn parse_sqlite(std::string_view rest) {
  Dsn dsn;
  dsn.scheme = "sqlite";
  const bool url_form = rest.starts_with("//");
  if (url_form) rest.remove_prefix(2);
  const std::size_t q = rest.find('?');
  const std::string_view path = rest.substr(0, q);
  // "sqlite:///" names the root directory, never a database file.
  if (path.empty() || path == "/" || (!url_form && path != ":memory:")) {
    fail(
        "sqlite needs a file path or :memory: (e.g. sqlite:///var/lib/app.db, sqlite://app.db, "
        "sqlite::memory:)");
  }
  dsn.database = decode(path, "database");
  if (q != std::string_view::npos) parse_query(rest.substr(q + 1), dsn.params);
  return dsn;
}

// Replaces the values of secret attributes in an ODBC connection string ("k=v;k={v;v}}v};")
// with "***", keeping everything else as written.
std::string mask_odbc(std::string_view cs) {
  std::string out;
  std::size_t i = 0;
  while (i < cs.size()) {
    const std::size_t eq = cs.find('=', i);
    const std::size_t semi = cs.find(';', i);
    if (eq == std::string_view::npos || (semi != std::string_view::npos && semi < eq)) {
      // An attribute without '=': nothing to mask; copy it with its ';'.
      const std::size_t end = semi == std::string_view::npos ? cs.size() : semi + 1;
      out.append(cs.substr(i, end - i));
      i = end;
      continue;
    }
    const bool secret = is_secret_key(cs.substr(i, eq - i));
    out.append(cs.substr(i, eq + 1 - i));
    i = eq + 1;
    std::size_t j = i;
    while (j < cs.size() && is_space(cs[j])) ++j;
    std::size_t value_end;
    if (j < cs.size() && cs[j] == '{') {
      // A braced value may hold ';' and '=', and writes '}' as "}}".
      std::size_t k = j + 1;
      while (k < cs.size()) {
        if (cs[k] == '}') {
          if (k + 1 < cs.size() && cs[k + 1] == '}') {
            k += 2;
            continue;
          }
          break;
        }
        ++k;
      }
      if (k >= cs.size()) {
        // Unbalanced: the "value" swallows the rest of the string, secrets included (the ODBC
        // driver refuses such a string). Mask all of it, whatever the key.
        out += "***";
        break;
      }
      value_end = k + 1;
    } else {
      value_end = cs.find(';', i);
      if (value_end == std::string_view::npos) value_end = cs.size();
    }
    // Anything between a closing brace and the next ';' is malformed, and for a secret it may be
    // part of the password: mask it along with the value.
    std::size_t next = cs.find(';', value_end);
    next = next == std::string_view::npos ? cs.size() : next;
    if (secret) {
      out += "***";
    } else {
      out.append(cs.substr(i, next - i));
    }
    i = next;
    if (i < cs.size()) {
      out += ';';
      ++i;
    }
  }
  return out;
}

}  // namespace

Dsn Dsn::parse(std::string_view text) {
  text = trim(text);
  if (text.empty()) fail("empty");

  // The two forms that are not URLs come first: an ODBC connection string is opaque to us, and
  // "sqlite::memory:" has no "//".
  if (istarts_with(text, "odbc:")) {
    Dsn dsn;
    dsn.scheme = "odbc";
    dsn.connection_string = std::string(text.substr(5));
    if (trim(dsn.connection_string).empty()) {
      fail("odbc needs a connection string after 'odbc:' (e.g. odbc:DSN=shop;UID=app;PWD=...)");
    }
    return dsn;
  }
  if (istarts_with(text, "sqlite:")) return parse_sqlite(text.substr(7));

  const std::size_t sep = text.find("://");
  if (sep == std::string_view::npos || sep == 0) {
    fail("missing scheme (expected e.g. postgresql://...)");
  }
  const std::string_view scheme_text = text.substr(0, sep);
  if (!valid_scheme(scheme_text)) {
    // Not quoted: text without a real scheme may be credentials ("user:pw@host://...").
    fail("bad scheme: use letters, digits, '+', '-' and '.' (expected e.g. postgresql://...)");
  }

  Dsn dsn;
  dsn.scheme = lower(scheme_text);
  if (dsn.scheme == "postgres") dsn.scheme = "postgresql";
  if (dsn.scheme == "mysql") dsn.scheme = "mariadb";

  const std::string_view rest = text.substr(sep + 3);
  const std::size_t authority_end = rest.find_first_of("/?");
  const std::string_view authority = rest.substr(0, authority_end);
  const std::string_view tail =
      authority_end == std::string_view::npos ? std::string_view() : rest.substr(authority_end);

  // The last '@' ends the credentials, so an unescaped '@' in a password still works. An '@'
  // only after the host part almost always means a password with an unescaped '/' or '?';
  // parsing on would put part of it in the host or port, and then in an error message.
  const std::size_t at = authority.rfind('@');
  if (at == std::string_view::npos && tail.find('@') != std::string_view::npos) {
    fail(
        "'@' after the host part; percent-encode '/', '?' and '@' in user names, passwords, "
        "database names and parameters (%2F, %3F, %40)");
  }
  std::string_view host_port = authority;
  if (at != std::string_view::npos) {
    const std::string_view userinfo = authority.substr(0, at);
    host_port = authority.substr(at + 1);
    const std::size_t colon = userinfo.find(':');
    dsn.user = decode(userinfo.substr(0, colon), "user");
    if (colon != std::string_view::npos) {
      dsn.password = decode(userinfo.substr(colon + 1), "password");
    }
  }
  parse_host_port(host_port, dsn);

  std::string_view query;
  bool has_query = false;
  if (!tail.empty() && tail.front() == '/') {
    const std::size_t q = tail.find('?');
    dsn.database = decode(tail.substr(1, q == std::string_view::npos ? q : q - 1), "database");
    if (q != std::string_view::npos) {
      query = tail.substr(q + 1);
      has_query = true;
    }
  } else if (!tail.empty()) {  // starts with '?'
    query = tail.substr(1);
    has_query = true;
  }
  if (has_query) parse_query(query, dsn.params);
  return dsn;
}

std::string Dsn::redacted() const {
  if (scheme == "odbc") return "odbc:" + mask_odbc(connection_string);

  std::string out = scheme;
  if (scheme == "sqlite") {
    out += database == ":memory:" ? ":" + database : "://" + encode(database, "?");
  } else {
    out += "://";
    if (!user.empty() || !password.empty()) {
      out += encode(user, ":@/?");
      if (!password.empty()) out += ":***";
      out += '@';
    }
    // A lone host with ':' is an IPv6 address and needs its brackets back; a multi-host list is
    // kept as it was written.
    if (host.find(':') != std::string::npos && host.find(',') == std::string::npos) {
      out += '[' + encode(host, "/?@[]") + ']';
    } else {
      out += encode(host, "/?@");
    }
    if (port != 0) out += ':' + std::to_string(port);
    if (!database.empty()) out += '/' + encode(database, "?");
  }
  char sep = '?';
  for (const auto& [key, value] : params) {
    out += sep;
    sep = '&';
    out += encode(key, "&=?@");
    out += '=';
    out += is_secret_key(key) ? "***" : encode(value, "&?@");
  }
  return out;
}

std::string Dsn::param(const std::string& key, const std::string& fallback) const {
  const auto it = params.find(key);
  return it == params.end() ? fallback : it->second;
}

}  // namespace reservoir
