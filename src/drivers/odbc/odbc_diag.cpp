// odbc_diag.cpp: reads ODBC diagnostic records and maps SQLSTATEs to reservoir error codes.
#include "drivers/odbc/odbc_diag.hpp"

#include <array>
#include <cctype>

namespace reservoir::drivers::odbc {

Diagnostics read_diagnostics(SQLSMALLINT handle_type, SQLHANDLE handle) {
  Diagnostics out;
  if (handle == SQL_NULL_HANDLE) {
    out.message = "no diagnostic record (no handle)";
    return out;
  }
  // A driver can pile up many records (one per row of a failed batch); a few say enough.
  constexpr SQLSMALLINT kMaxRecords = 8;
  for (SQLSMALLINT i = 1; i <= kMaxRecords; ++i) {
    std::array<SQLCHAR, 6> state{};
    SQLINTEGER native = 0;
    std::array<SQLCHAR, 1024> text{};
    SQLSMALLINT text_len = 0;
    const SQLRETURN rc = SQLGetDiagRec(handle_type, handle, i, state.data(), &native, text.data(),
                                       static_cast<SQLSMALLINT>(text.size()), &text_len);
    if (!ok(rc)) break;
    if (i == 1) {
      out.sqlstate.assign(reinterpret_cast<const char*>(state.data()));
      out.native_code = native;
    }
    if (!out.message.empty()) out.message += "; ";
    const auto len = std::min<std::size_t>(text_len > 0 ? static_cast<std::size_t>(text_len) : 0,
                                           text.size() - 1);
    out.message.append(reinterpret_cast<const char*>(text.data()), len);
  }
  if (out.message.empty()) out.message = "no diagnostic record";
  return out;
}

ErrorCode map_sqlstate(std::string_view s, Phase phase) noexcept {
  if (s == "28000" || s == "28P01") return ErrorCode::auth_failed;
  if (phase == Phase::connect) return ErrorCode::connect_failed;
  if (s == "08S01" || s == "08003" || s == "08007" || s == "HYT01" || s == "57P01" ||
      s == "57P02" || s == "57P03") {
    return ErrorCode::connection_lost;
  }
  return ErrorCode::query_failed;
}

void refine_connect_diagnostics(Diagnostics& d) {
  const auto says = [&](std::string_view text) {
    return d.message.find(text) != std::string::npos;
  };
  if (d.native_code == 1045 || says("Access denied for user")) {
    d.sqlstate = "28000";
  } else if (says("password authentication failed")) {
    d.sqlstate = "28P01";
  } else if (d.native_code == 1049 || says("Unknown database") ||
             (says("database \"") && says("\" does not exist"))) {
    d.sqlstate = "3D000";
  }
}

std::string scrub(std::string text, std::string_view secret) {
  const auto lower = [](char c) {
    return static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  };
  // 1. Whole "PWD=..." / "PASSWORD=..." values, as a driver manager echoing a connection string
  //    writes them: up to ';', a quote, whitespace or the end (a braced value to its '}').
  for (const std::string_view key : {std::string_view("pwd"), std::string_view("password")}) {
    std::size_t from = 0;
    for (;;) {
      std::size_t at = std::string::npos;
      for (std::size_t i = from; i + key.size() < text.size(); ++i) {
        bool match = true;
        for (std::size_t k = 0; k < key.size() && match; ++k) match = lower(text[i + k]) == key[k];
        // A key, not the end of a longer word ("xpwd="): the character before is no letter.
        if (match && (i == 0 || !std::isalnum(static_cast<unsigned char>(text[i - 1])))) {
          std::size_t e = i + key.size();
          while (e < text.size() && text[e] == ' ') ++e;
          if (e < text.size() && text[e] == '=') {
            at = e + 1;
            break;
          }
        }
      }
      if (at == std::string::npos) break;
      std::size_t end = at;
      if (end < text.size() && text[end] == '{') {
        const std::size_t close = text.find('}', end);
        end = close == std::string::npos ? text.size() : close + 1;
      } else {
        while (end < text.size() && text[end] != ';' && text[end] != '\'' && text[end] != '"' &&
               !std::isspace(static_cast<unsigned char>(text[end]))) {
          ++end;
        }
      }
      if (end > at) text.replace(at, end - at, "***");
      from = at + 3;
    }
  }
  // 2. The password itself wherever else it appears, unless it is so short (under 4 characters)
  //    that replacing it would garble ordinary words of the message.
  if (secret.size() >= 4) {
    for (std::size_t at = text.find(secret); at != std::string::npos;
         at = text.find(secret, at + 3)) {
      text.replace(at, secret.size(), "***");
    }
  }
  return text;
}

}  // namespace reservoir::drivers::odbc
