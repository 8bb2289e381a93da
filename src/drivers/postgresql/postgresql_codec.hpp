// postgresql_codec.hpp: what the blocking and the non-blocking statement paths share about
// values: parameters encoded into the arrays libpq's send functions take, results decoded into
// reservoir Values, and the small PGresult helpers. Driver-internal (includes libpq-fe.h).
#pragma once

#include <libpq-fe.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "reservoir/value.hpp"

namespace reservoir::drivers::pg {

struct ResultDeleter {
  void operator()(PGresult* r) const noexcept { PQclear(r); }
};
using ResultPtr = std::unique_ptr<PGresult, ResultDeleter>;

// Parameters in the arrays PQexecParams / PQexecPrepared (and their PQsend* forms) take.
// values point into text, blobs and the Values encoded: those must outlive the send.
struct EncodedParams {
  std::vector<Oid> types;
  std::vector<const char*> values;
  std::vector<int> lengths;
  std::vector<int> formats;
  std::vector<std::string> text;  // rendered numbers and booleans
  std::vector<Bytes> blobs;       // bytes parameters (Value hands them out only as copies)
};

// Fills p and appends one letter per parameter type to signature: statements prepared with
// other parameter types are other statements. Throws invalid_argument for a NUL in text or
// bytes larger than 2 GiB.
void encode_params(std::span<const Value> params, EncodedParams& p, std::string& signature);

bool starts_with(std::string_view s, std::string_view prefix) noexcept;

// Rows changed, from the command tag: INSERT, UPDATE, DELETE, MERGE, COPY and CREATE TABLE AS
// count; a query's row count (SELECT n, FETCH n, MOVE n) does not.
std::uint64_t affected_rows(PGresult* res);

// The rows of res, typed by column type (see PostgresConnection).
ResultSet to_result_set(const PGresult* res, std::uint64_t affected);

// An error field of res ("" when res is null or has none).
std::string field(const PGresult* res, int code);

bool ok_status(ExecStatusType s) noexcept;
bool is_copy(ExecStatusType s) noexcept;

}  // namespace reservoir::drivers::pg
