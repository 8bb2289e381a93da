// postgresql_sql.cpp: the lexical scan behind the driver's choice of protocol and its
// parameter-count check.
#include "drivers/postgresql/postgresql_sql.hpp"

#include <limits>

namespace reservoir::drivers::pg {
namespace {

bool is_space(char c) noexcept {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

bool is_ident_start(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
         static_cast<unsigned char>(c) >= 0x80;
}

bool is_ident_char(char c) noexcept {
  return is_ident_start(c) || (c >= '0' && c <= '9') || c == '$';
}

bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

// Returns the index just past a comment starting at i, or i when none starts there.
std::size_t skip_comment(std::string_view s, std::size_t i) noexcept {
  if (s.substr(i, 2) == "--") {
    const std::size_t end = s.find('\n', i);
    return end == std::string_view::npos ? s.size() : end + 1;
  }
  if (s.substr(i, 2) == "/*") {
    // PostgreSQL's block comments nest.
    int depth = 1;
    std::size_t j = i + 2;
    while (j < s.size() && depth > 0) {
      if (s.substr(j, 2) == "/*") {
        ++depth;
        j += 2;
      } else if (s.substr(j, 2) == "*/") {
        --depth;
        j += 2;
      } else {
        ++j;
      }
    }
    return j;
  }
  return i;
}

// Index just past a quoted run opened at i by quote; doubled quotes stay inside. With
// backslash_escapes (E'...'), a backslash takes the next character with it.
std::size_t skip_quoted(std::string_view s, std::size_t i, char quote,
                        bool backslash_escapes) noexcept {
  std::size_t j = i + 1;
  while (j < s.size()) {
    const char c = s[j];
    if (backslash_escapes && c == '\\') {
      j += 2;
    } else if (c == quote) {
      if (j + 1 < s.size() && s[j + 1] == quote) {
        j += 2;
      } else {
        return j + 1;
      }
    } else {
      ++j;
    }
  }
  return s.size();
}

// If a dollar-quote opener ($$ or $tag$) starts at i, the length of the opener, else 0.
std::size_t dollar_tag_length(std::string_view s, std::size_t i) noexcept {
  std::size_t j = i + 1;
  if (j < s.size() && s[j] == '$') return 2;
  if (j >= s.size() || !is_ident_start(s[j])) return 0;
  while (j < s.size() && is_ident_char(s[j]) && s[j] != '$') ++j;
  return j < s.size() && s[j] == '$' ? j - i + 1 : 0;
}

}  // namespace

SqlScan scan_sql(std::string_view s) noexcept {
  SqlScan scan;
  bool ended = false;  // a ';' was seen at top level
  std::size_t i = 0;
  // A placeholder or a quote opener only counts when it does not continue an identifier or a
  // number ("a$1" is an identifier, "x'..." cannot start a string without E/U&/B/X prefixes).
  char prev = ' ';
  while (i < s.size()) {
    const char c = s[i];
    if (is_space(c)) {
      prev = c;
      ++i;
      continue;
    }
    if (const std::size_t after = skip_comment(s, i); after != i) {
      prev = ' ';
      i = after;
      continue;
    }
    if (c == ';') {
      ended = true;
      prev = c;
      ++i;
      continue;
    }
    if (ended) {
      scan.several_statements = true;
      ended = false;
    }
    if (c == '\'') {
      // E'...' and e'...' take backslash escapes; prev is then the E of an identifier-like run
      // of one letter, which the identifier branch below consumed.
      const bool escapes =
          (prev == 'E' || prev == 'e') && i >= 1 && (i < 2 || !is_ident_char(s[i - 2]));
      i = skip_quoted(s, i, '\'', escapes);
      prev = ' ';
      continue;
    }
    if (c == '"') {
      i = skip_quoted(s, i, '"', false);
      prev = ' ';
      continue;
    }
    if (c == '$' && !is_ident_char(prev)) {
      if (i + 1 < s.size() && is_digit(s[i + 1])) {
        std::size_t j = i + 1;
        std::size_t n = 0;
        while (j < s.size() && is_digit(s[j])) {
          if (n < std::numeric_limits<std::size_t>::max() / 16) {
            n = n * 10 + static_cast<std::size_t>(s[j] - '0');
          }
          ++j;
        }
        if (n > scan.max_placeholder) scan.max_placeholder = n;
        prev = '0';
        i = j;
        continue;
      }
      if (const std::size_t tag = dollar_tag_length(s, i); tag > 0) {
        const std::string_view opener = s.substr(i, tag);
        const std::size_t close = s.find(opener, i + tag);
        i = close == std::string_view::npos ? s.size() : close + tag;
        prev = ' ';
        continue;
      }
    }
    prev = c;
    ++i;
  }
  return scan;
}

bool starts_with_keyword(std::string_view sql, std::string_view keyword) noexcept {
  std::size_t i = 0;
  while (i < sql.size()) {
    if (is_space(sql[i])) {
      ++i;
    } else if (const std::size_t after = skip_comment(sql, i); after != i) {
      i = after;
    } else {
      break;
    }
  }
  if (sql.size() - i < keyword.size()) return false;
  for (std::size_t k = 0; k < keyword.size(); ++k) {
    char c = sql[i + k];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != keyword[k]) return false;
  }
  const std::size_t end = i + keyword.size();
  return end == sql.size() || !is_ident_char(sql[end]);
}

}  // namespace reservoir::drivers::pg
