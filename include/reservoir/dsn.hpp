// reservoir/dsn.hpp: data source names, parsed once and checked before any connect.
//
//   postgresql://user:secret@db1:5432/shop?sslmode=require   (also postgres://)
//   mariadb://user:secret@db1:3306/shop                       (also mysql://)
//   sqlite:///var/lib/app/app.db?busy_timeout=5000            (absolute path)
//   sqlite://relative/app.db    sqlite::memory:
//   odbc:DSN=shop;UID=app;PWD=secret
//
// Percent-escapes (%40 for @) are decoded in user, password, host, database and parameters.
// Any other scheme takes the generic form scheme://[user[:password]@]host[:port][/database][?k=v].
// IPv6 hosts go in brackets ([::1]:5432; host is then "::1"). Several hosts ("h1:5432,h2:5433",
// for libpq) are kept in host as written, and port is then 0. A password may hold ':' and '@'
// but must escape '/' and '?' (%2F, %3F); an '@' after the host part is rejected when there are
// no credentials before it, as it almost always means such an unescaped password.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <string_view>

namespace reservoir {

struct Dsn {
  std::string scheme;  // "postgresql", "mariadb", "sqlite", "odbc", ... (aliases folded)
  std::string user;
  std::string password;
  std::string host;                           // may hold several comma-separated hosts for libpq
  std::uint16_t port = 0;                     // 0 when not given (or with several hosts)
  std::string database;                       // sqlite: the file path, or ":memory:"
  std::map<std::string, std::string> params;  // ?key=value pairs
  std::string connection_string;              // odbc: everything after "odbc:"

  // Parses text. Throws Error{invalid_argument} naming what is wrong (never echoing a password).
  static Dsn parse(std::string_view text);

  // The DSN as text with the password replaced by "***"; safe for logs and error messages.
  std::string redacted() const;

  // The value of a ?key=value parameter, or fallback.
  std::string param(const std::string& key, const std::string& fallback = {}) const;
};

}  // namespace reservoir
