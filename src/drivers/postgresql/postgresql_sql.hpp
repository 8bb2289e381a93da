// postgresql_sql.hpp: a small lexical scan of PostgreSQL SQL text: how many $N placeholders it
// uses and whether it holds more than one statement. Pure; no libpq.
#pragma once

#include <cstddef>
#include <string_view>

namespace reservoir::drivers::pg {

struct SqlScan {
  // The highest N of the $N placeholders outside string literals, quoted identifiers, dollar
  // quotes and comments (0 when there are none).
  std::size_t max_placeholder = 0;
  // True when a ';' is followed by more than whitespace, comments and further ';'.
  bool several_statements = false;
};

// Scans sql the way PostgreSQL's lexer would split it into tokens, as far as placeholders and
// statement ends are concerned: '...' (with '' inside), E'...' (with backslash escapes),
// "..." identifiers, $tag$...$tag$ dollar quotes, -- and nested /* */ comments. An identifier
// may contain '$' ("a$1" is no placeholder). Unterminated quotes and comments run to the end.
//
// The result only chooses the protocol and checks the parameter count before a round trip; the
// server has the last word, so a scan that misjudges exotic text costs a clearer error, not
// correctness.
SqlScan scan_sql(std::string_view sql) noexcept;

// True when the first word of sql (after whitespace and comments) is keyword (lower case),
// ignoring case.
bool starts_with_keyword(std::string_view sql, std::string_view keyword) noexcept;

}  // namespace reservoir::drivers::pg
