// tests/fuzz/pg_codec_fuzz.cpp: libFuzzer target for reservoird's PostgreSQL protocol codec
// (src/server/pg_codec.{hpp,cpp}). Every input goes, as a byte stream cut into chunks whose sizes
// come from the input itself, through both frame readers (StartupReader for the startup phase,
// MessageScanner and read_message for the normal phase), and every frame and message body found
// goes through every parser. The codec may reject bytes only with its own ProtocolError: any
// other exception, a crash or a sanitizer report is a finding. A few invariants are checked too
// (a frame's length matches its prefix; the scanner and read_message agree; the builders'
// output parses back to what was put in).
//
//   build/fuzz/tests/fuzz/pg_codec_fuzz -max_total_time=60 tests/fuzz/corpus/pg_codec
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "server/pg_codec.hpp"

namespace pg = reservoir::server::pg;

namespace {

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "pg_codec_fuzz: invariant broken: %s\n", what);
  std::abort();
}
#define FUZZ_CHECK(cond)            \
  do {                              \
    if (!(cond)) fail(#cond);       \
  } while (0)

std::uint32_t be32(std::string_view s) {
  const auto* u = reinterpret_cast<const unsigned char*>(s.data());
  return (std::uint32_t{u[0]} << 24) | (std::uint32_t{u[1]} << 16) | (std::uint32_t{u[2]} << 8) |
         std::uint32_t{u[3]};
}

// Runs f; a ProtocolError is an accepted outcome, any other exception escapes to libFuzzer
// (which reports it as a crash: "deadly signal" after std::terminate).
template <class F>
bool guarded(F&& f) {
  try {
    f();
    return true;
  } catch (const pg::ProtocolError& e) {
    FUZZ_CHECK(e.what() != nullptr);
    FUZZ_CHECK(e.sqlstate().size() == 5);
    return false;
  }
}

// Chunk sizes from a seed byte: 1..N, cycling, so a message is cut at every kind of place.
struct Chunker {
  unsigned seed;
  std::size_t i = 0;
  std::size_t next(std::size_t left) {
    if (seed == 0) return left;  // all at once
    const std::size_t n = 1 + ((seed * 131 + i++ * 17) % (seed % 23 + 1));
    return n < left ? n : left;
  }
};

void parse_every_way(std::string_view body) {
  guarded([&] {
    const auto f = pg::parse_error_fields(body);
    for (const auto& [code, value] : f.all) {
      FUZZ_CHECK(code != '\0');
      FUZZ_CHECK(value.find('\0') == std::string::npos);
    }
  });
  guarded([&] {
    const char s = pg::parse_ready_for_query(body);
    FUZZ_CHECK(s == 'I' || s == 'T' || s == 'E');
  });
  guarded([&] { (void)pg::parse_parameter_status(body); });
  guarded([&] { (void)pg::parse_backend_key_data(body); });
  guarded([&] {
    const auto r = pg::parse_authentication(body);
    FUZZ_CHECK(r.data.size() <= body.size());
  });
  guarded([&] {
    const auto q = pg::parse_query(body);
    FUZZ_CHECK(q.size() < body.size());
    FUZZ_CHECK(q.data() >= body.data() && q.data() + q.size() <= body.data() + body.size());
  });
  guarded([&] {
    const auto p = pg::parse_password(body);
    FUZZ_CHECK(p.size() < body.size());
  });
  guarded([&] {
    const auto s = pg::parse_sasl_initial_response(body);
    FUZZ_CHECK(s.mechanism.size() + s.data.size() <= body.size());
    if (!s.data.empty())
      FUZZ_CHECK(s.data.data() >= body.data() &&
                 s.data.data() + s.data.size() <= body.data() + body.size());
  });
  guarded([&] { (void)pg::parse_command_complete(body); });
}

// The startup phase: frames out of StartupReader, each to parse_startup.
void startup_phase(std::string_view in, unsigned chunk_seed, std::size_t max) {
  pg::StartupReader r(max);
  Chunker ch{chunk_seed};
  guarded([&] {
    std::size_t off = 0;
    while (off < in.size()) {
      const std::size_t n = ch.next(in.size() - off);
      r.feed(in.data() + off, n);
      off += n;
      while (auto frame = r.next()) {
        FUZZ_CHECK(frame->size() >= 8 && frame->size() <= max);
        FUZZ_CHECK(be32(*frame) == frame->size());
        guarded([&] {
          const pg::StartupPacket p = pg::parse_startup(*frame);
          if (p.kind == pg::StartupPacket::Kind::startup) {
            FUZZ_CHECK(p.param("user") != nullptr && !p.param("user")->empty());
            // Round trip through the builder.
            std::string out;
            pg::put_startup_message(out, p.params);
            const pg::StartupPacket q = pg::parse_startup(out);
            FUZZ_CHECK(q.params == p.params);
          } else if (p.kind == pg::StartupPacket::Kind::cancel_request) {
            std::string out;
            pg::put_cancel_request(out, {p.cancel_pid, p.cancel_key});
            const pg::StartupPacket q = pg::parse_startup(out);
            FUZZ_CHECK(q.cancel_pid == p.cancel_pid && q.cancel_key == p.cancel_key);
          }
        });
      }
      (void)r.rest();
    }
  });
}

// The normal phase: MessageScanner and FrameScanner in chunks, compared with read_message over
// the whole input.
void normal_phase(std::string_view in, unsigned chunk_seed, const pg::TypeSet& capture,
                  std::size_t max) {
  // Reference: read_message over the whole buffer.
  struct Ref {
    char type;
    std::string body;
  };
  std::vector<Ref> ref;
  bool ref_error = false;
  guarded([&] {
    std::string_view rest = in;
    std::size_t size = 0;
    while (auto m = pg::read_message(rest, &size, max)) {
      FUZZ_CHECK(size >= 5 && size <= rest.size());
      FUZZ_CHECK(m->body.size() == size - 5);
      ref.push_back({m->type, std::string(m->body)});
      parse_every_way(m->body);
      rest.remove_prefix(size);
    }
  }) || (ref_error = true);

  pg::MessageScanner scan(max, capture);
  Chunker ch{chunk_seed};
  std::size_t seen = 0;
  const bool ok = guarded([&] {
    std::size_t off = 0;
    while (off < in.size()) {
      const std::size_t n = ch.next(in.size() - off);
      scan.feed(in.data() + off, n,
                [&](char type, std::string_view body, bool captured, std::size_t end) {
                  FUZZ_CHECK(end <= n);
                  // Types are ASCII: a byte of 128 or more is never captured.
                  const auto t = static_cast<unsigned char>(type);
                  FUZZ_CHECK(captured == (t < capture.size() && capture.test(t)));
                  if (!captured) FUZZ_CHECK(body.empty());
                  if (seen < ref.size()) {
                    FUZZ_CHECK(ref[seen].type == type);
                    if (captured) FUZZ_CHECK(ref[seen].body == body);
                    FUZZ_CHECK(scan.first_body_byte() ==
                               (ref[seen].body.empty()
                                    ? 0
                                    : static_cast<unsigned char>(ref[seen].body[0])));
                  }
                  ++seen;
                  if (captured) parse_every_way(body);
                });
      off += n;
    }
  });
  // FrameScanner (no capture) frames the same messages from the same chunks: same types, ends
  // and first bytes, and the same failure.
  pg::FrameScanner frames(max);
  Chunker ch2{chunk_seed};
  std::size_t framed = 0;
  const bool frames_ok = guarded([&] {
    std::size_t off = 0;
    while (off < in.size()) {
      const std::size_t n = ch2.next(in.size() - off);
      frames.feed(in.data() + off, n,
                  [&](char type, std::string_view body, bool captured, std::size_t end) {
                    FUZZ_CHECK(end <= n);
                    FUZZ_CHECK(!captured && body.empty());
                    if (framed < ref.size()) {
                      FUZZ_CHECK(ref[framed].type == type);
                      FUZZ_CHECK(frames.first_body_byte() ==
                                 (ref[framed].body.empty()
                                      ? 0
                                      : static_cast<unsigned char>(ref[framed].body[0])));
                    }
                    ++framed;
                  });
      off += n;
    }
  });
  FUZZ_CHECK(frames_ok == ok);
  FUZZ_CHECK(framed == seen);
  // Both saw the same whole messages; they fail on the same (bad-length) message.
  if (ok) {
    FUZZ_CHECK(!ref_error);
    FUZZ_CHECK(seen == ref.size());
  } else {
    FUZZ_CHECK(ref_error);
    FUZZ_CHECK(seen == ref.size());
  }
  if (ok && seen == ref.size()) (void)scan.at_boundary();
  scan.reset();
  FUZZ_CHECK(scan.at_boundary());
}

// Builders: whatever strings the input holds, their messages must parse back.
void builders(std::string_view in) {
  const std::size_t cut = in.size() / 3;
  const std::string a(in.substr(0, cut)), b(in.substr(cut, cut)), c(in.substr(2 * cut));
  auto nul_free = [](const std::string& s) { return s.find('\0') == std::string::npos; };
  auto one = [](const std::string& out) {
    std::size_t size = 0;
    auto m = pg::read_message(out, &size);
    FUZZ_CHECK(m && size == out.size());
    return *m;
  };
  {
    std::string out;
    pg::put_sasl_initial_response(out, "SCRAM-SHA-256", c);
    const auto s = pg::parse_sasl_initial_response(one(out).body);
    FUZZ_CHECK(s.mechanism == "SCRAM-SHA-256" && s.data == c);
  }
  {
    std::string out;
    pg::put_auth_sasl_continue(out, c);
    const auto r = pg::parse_authentication(one(out).body);
    FUZZ_CHECK(r.code == pg::AuthCode::sasl_continue && r.data == c);
  }
  if (nul_free(a) && nul_free(b)) {
    std::string out;
    pg::put_parameter_status(out, a, b);
    const auto [k, v] = pg::parse_parameter_status(one(out).body);
    FUZZ_CHECK(k == a && v == b);
    out.clear();
    pg::put_error_response(out, "ERROR", "XX000", a);
    const auto f = pg::parse_error_fields(one(out).body);
    FUZZ_CHECK(f.message == a && f.sqlstate == "XX000" && f.severity == "ERROR");
    out.clear();
    pg::put_query(out, b);
    FUZZ_CHECK(pg::parse_query(one(out).body) == b);
    out.clear();
    pg::put_password_message(out, a);
    FUZZ_CHECK(pg::parse_password(one(out).body) == a);
    out.clear();
    pg::put_command_complete(out, b);
    FUZZ_CHECK(pg::parse_command_complete(one(out).body) == b);
    if (!a.empty()) {
      out.clear();
      pg::put_startup_message(out, {{"user", a}, {"database", b}});
      const auto p = pg::parse_startup(out);
      FUZZ_CHECK(p.param("user") && *p.param("user") == a);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  // Chunking seeds from the input's first byte (0: all at once; also always one byte at a time).
  const unsigned seed = size > 0 ? data[0] : 0;

  // Each parser straight on the raw bytes.
  parse_every_way(in);
  guarded([&] { (void)pg::parse_startup(in); });

  startup_phase(in, 0, pg::kMaxStartupMessage);
  startup_phase(in, 1, pg::kMaxStartupMessage);
  startup_phase(in, seed, pg::kMaxStartupMessage);
  startup_phase(in, seed, 64);  // a small limit: the length checks near it

  pg::TypeSet all;
  all.set();
  normal_phase(in, 0, all, pg::kDefaultMaxMessage);
  normal_phase(in, 1, all, pg::kDefaultMaxMessage);
  normal_phase(in, seed, pg::types_bitmap("ZSEKRCNQPp"), pg::kDefaultMaxMessage);
  normal_phase(in, seed, {}, 16);

  // The startup frame then normal messages, as a client sends them (a pipelined first batch).
  guarded([&] {
    pg::StartupReader r;
    r.feed(in.data(), in.size());
    if (auto frame = r.next()) {
      guarded([&] { (void)pg::parse_startup(*frame); });
      const std::string rest(r.rest());
      normal_phase(rest, seed, all, pg::kDefaultMaxMessage);
    }
  });

  builders(in);
  return 0;
}
