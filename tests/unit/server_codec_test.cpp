// tests/unit/server_codec_test.cpp: reservoird's PostgreSQL protocol codec (src/server/pg_codec):
// framing split at every byte boundary, garbage and oversize lengths, parser/builder round trips.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "server/pg_codec.hpp"

namespace reservoir::server::pg {
namespace {

std::string startup_bytes() {
  std::string out;
  put_startup_message(out, {{"user", "alice"}, {"database", "shop"}, {"options", "-c a=b"}});
  return out;
}

TEST(ServerCodecTest, StartupRoundTripAtEveryBoundary) {
  const std::string bytes = startup_bytes();
  for (std::size_t split = 0; split <= bytes.size(); ++split) {
    StartupReader r;
    r.feed(bytes.data(), split);
    if (split < bytes.size()) {
      EXPECT_FALSE(r.next().has_value()) << split;
      r.feed(bytes.data() + split, bytes.size() - split);
    }
    auto frame = r.next();
    ASSERT_TRUE(frame.has_value()) << split;
    const StartupPacket p = parse_startup(*frame);
    EXPECT_EQ(p.kind, StartupPacket::Kind::startup);
    EXPECT_EQ(p.protocol, kProtocol3);
    ASSERT_NE(p.param("user"), nullptr);
    EXPECT_EQ(*p.param("user"), "alice");
    EXPECT_EQ(*p.param("database"), "shop");
    EXPECT_EQ(*p.param("options"), "-c a=b");
    EXPECT_EQ(p.param("nope"), nullptr);
  }
}

TEST(ServerCodecTest, SslGssAndCancelRequests) {
  std::string ssl;
  put_ssl_request(ssl);
  EXPECT_EQ(parse_startup(ssl).kind, StartupPacket::Kind::ssl_request);
  std::string gss = ssl;
  gss[7] = static_cast<char>(kGssEncRequestCode & 0xff);
  EXPECT_EQ(parse_startup(gss).kind, StartupPacket::Kind::gssenc_request);
  std::string cancel;
  put_cancel_request(cancel, {1234, -5});
  const StartupPacket c = parse_startup(cancel);
  EXPECT_EQ(c.kind, StartupPacket::Kind::cancel_request);
  EXPECT_EQ(c.cancel_pid, 1234);
  EXPECT_EQ(c.cancel_key, -5);
  // SSLRequest then the real startup in one read.
  StartupReader r;
  const std::string both = ssl + startup_bytes();
  r.feed(both.data(), both.size());
  EXPECT_EQ(parse_startup(*r.next()).kind, StartupPacket::Kind::ssl_request);
  EXPECT_EQ(parse_startup(*r.next()).kind, StartupPacket::Kind::startup);
  EXPECT_FALSE(r.next().has_value());
}

TEST(ServerCodecTest, StartupRejectsBadLengthsAndContent) {
  StartupReader r;
  const char tiny[] = {0, 0, 0, 3};
  EXPECT_THROW(r.feed(tiny, 4), ProtocolError);
  StartupReader r2;
  const char huge[] = {0x7f, 0, 0, 0};
  EXPECT_THROW(r2.feed(huge, 4), ProtocolError);
  std::string v2;
  put_startup_message(v2, {{"user", "x"}});
  v2[5] = 2;  // protocol 2.0
  EXPECT_THROW(parse_startup(v2), ProtocolError);
  std::string nouser;
  put_startup_message(nouser, {{"database", "x"}});
  try {
    parse_startup(nouser);
    FAIL();
  } catch (const ProtocolError& e) {
    EXPECT_EQ(e.sqlstate(), "28000");
  }
  std::string unterminated = startup_bytes();
  unterminated.back() = 'x';
  EXPECT_THROW(parse_startup(unterminated), ProtocolError);
}

std::string backend_stream() {
  std::string s;
  put_auth_ok(s);
  put_parameter_status(s, "client_encoding", "UTF8");
  put_parameter_status(s, "TimeZone", "UTC");
  put_backend_key_data(s, {42, 99});
  put_row_description(s, {"a", "b"});
  put_data_row(s, {std::string("1"), std::nullopt});
  put_command_complete(s, "SELECT 1");
  put_empty_query_response(s);
  put_notice_response(s, "NOTICE", "00000", "hello");
  put_error_response(s, "ERROR", "42601", "syntax error");
  put_ready_for_query(s, 'T');
  return s;
}

TEST(ServerCodecTest, ScannerSplitAtEveryBoundary) {
  const std::string s = backend_stream();
  std::vector<std::pair<char, std::string>> expected;
  {
    std::size_t at = 0, size = 0;
    while (auto m = read_message(std::string_view(s).substr(at), &size)) {
      expected.emplace_back(m->type, std::string(m->body));
      at += size;
    }
    ASSERT_EQ(at, s.size());
  }
  ASSERT_EQ(expected.size(), 11u);
  for (std::size_t split = 0; split <= s.size(); ++split) {
    for (std::size_t split2 = split; split2 <= s.size(); split2 += 7) {
      MessageScanner scan(kDefaultMaxMessage, types_bitmap("SZKE"));
      std::vector<std::pair<char, std::string>> got;
      auto on = [&](char type, std::string_view body, bool captured) {
        got.emplace_back(type, captured ? std::string(body) : std::string());
      };
      scan.feed(s.data(), split, on);
      scan.feed(s.data() + split, split2 - split, on);
      scan.feed(s.data() + split2, s.size() - split2, on);
      EXPECT_TRUE(scan.at_boundary());
      ASSERT_EQ(got.size(), expected.size()) << split;
      for (std::size_t i = 0; i < got.size(); ++i) {
        EXPECT_EQ(got[i].first, expected[i].first);
        const char t = got[i].first;
        if (t == 'S' || t == 'Z' || t == 'K' || t == 'E')
          EXPECT_EQ(got[i].second, expected[i].second);
        else
          EXPECT_EQ(got[i].second, "");
      }
    }
  }
}

TEST(ServerCodecTest, ScannerByteByByte) {
  const std::string s = backend_stream();
  MessageScanner scan(kDefaultMaxMessage, types_bitmap("Z"));
  char last_status = 0;
  int n = 0;
  for (char c : s)
    scan.feed(&c, 1, [&](char type, std::string_view body, bool) {
      ++n;
      if (type == 'Z') last_status = parse_ready_for_query(body);
    });
  EXPECT_EQ(n, 11);
  EXPECT_EQ(last_status, 'T');
}

// Message types are ASCII; a byte of 128 or more as a type is framed like any other and never
// captured (the type set has 128 entries).
TEST(ServerCodecTest, ScannerFramesNonAsciiTypesWithoutCapturing) {
  MessageScanner scan(kDefaultMaxMessage, types_bitmap("Z\xc8"));
  const char msg[] = {'\xc8', 0, 0, 0, 6, 'a', 'b', 'Z', 0, 0, 0, 5, 'I'};
  std::vector<std::pair<char, bool>> seen;
  scan.feed(msg, sizeof msg, [&](char type, std::string_view, bool captured) {
    seen.emplace_back(type, captured);
  });
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0], std::make_pair('\xc8', false));
  EXPECT_EQ(seen[1], std::make_pair('Z', true));
  EXPECT_TRUE(scan.at_boundary());
}

// first_body_byte() in the callback: a named Parse ('s') and the unnamed one (0), an empty body
// (0), whole and split at every byte.
TEST(ServerCodecTest, ScannerGivesTheFirstBodyByte) {
  std::string stream;
  stream += std::string("P\0\0\0\x0cs1\0x\0\0\0", 13);  // Parse "s1", query "x", 0 types
  stream += std::string("P\0\0\0\x0a\0x\0\0\0", 11);    // Parse "", query "x"
  stream += std::string("S\0\0\0\x04", 5);                 // Sync: no body
  for (const std::size_t step : {stream.size(), std::size_t{1}}) {
    MessageScanner scan;
    std::string firsts;
    for (std::size_t at = 0; at < stream.size(); at += step) {
      // Each chunk in a buffer of its own: a read past its end cannot find the next byte.
      const std::string chunk = stream.substr(at, std::min(step, stream.size() - at));
      scan.feed(chunk.data(), chunk.size(), [&](char, std::string_view, bool) {
        firsts.push_back(static_cast<char>(scan.first_body_byte()));
      });
    }
    EXPECT_EQ(firsts, std::string("s\0\0", 3)) << "step " << step;
  }
}

// FrameScanner frames like MessageScanner (types, first bytes, boundaries) but never captures.
TEST(ServerCodecTest, FrameScannerFramesWithoutBodies) {
  const std::string s = backend_stream();
  for (const std::size_t step : {s.size(), std::size_t{1}, std::size_t{7}}) {
    MessageScanner full;
    FrameScanner frames;
    std::vector<std::pair<char, unsigned char>> want, got;
    for (std::size_t at = 0; at < s.size(); at += step) {
      const std::string chunk = s.substr(at, std::min(step, s.size() - at));
      full.feed(chunk.data(), chunk.size(), [&](char type, std::string_view, bool) {
        want.emplace_back(type, full.first_body_byte());
      });
      frames.feed(chunk.data(), chunk.size(), [&](char type, std::string_view body, bool captured) {
        EXPECT_FALSE(captured);
        EXPECT_TRUE(body.empty());
        got.emplace_back(type, frames.first_body_byte());
      });
      EXPECT_EQ(frames.at_boundary(), full.at_boundary()) << at;
    }
    EXPECT_EQ(got, want) << "step " << step;
    EXPECT_EQ(got.size(), 11u);
  }
  static_assert(sizeof(FrameScanner) <= 16);
  FrameScanner small(1024);
  const char big[] = {'Q', 0, 0, 0x10, 0};
  EXPECT_THROW(small.feed(big, 5, [](char, std::string_view, bool) {}), ProtocolError);
}

TEST(ServerCodecTest, ScannerRejectsBadAndOversizeLengths) {
  MessageScanner scan(1024);
  const char bad[] = {'Q', 0, 0, 0, 3};
  EXPECT_THROW(scan.feed(bad, 5, [](char, std::string_view, bool) {}), ProtocolError);
  MessageScanner scan2(1024);
  const char big[] = {'Q', 0x7f, 0x7f, 0x7f, 0x7f};  // about 2 GB: refused, never allocated
  EXPECT_THROW(scan2.feed(big, 5, [](char, std::string_view, bool) {}), ProtocolError);
  std::size_t size = 0;
  EXPECT_THROW(read_message(std::string_view(big, 5), &size, 1024), ProtocolError);
}

TEST(ServerCodecTest, GarbageNeverCrashes) {
  std::mt19937 rng(7);
  for (int round = 0; round < 2000; ++round) {
    std::string junk(rng() % 64, '\0');
    for (char& c : junk) c = static_cast<char>(rng());
    try {
      MessageScanner scan(4096, types_bitmap("SZKERQp"));
      scan.feed(junk.data(), junk.size(), [](char type, std::string_view body, bool captured) {
        if (!captured) return;
        try {
          if (type == 'S') parse_parameter_status(body);
          if (type == 'Z') parse_ready_for_query(body);
          if (type == 'K') parse_backend_key_data(body);
          if (type == 'E') parse_error_fields(body);
          if (type == 'R') parse_authentication(body);
          if (type == 'Q') parse_query(body);
          if (type == 'p') parse_sasl_initial_response(body);
        } catch (const ProtocolError&) {
        }
      });
    } catch (const ProtocolError&) {
    }
    try {
      StartupReader r;
      r.feed(junk.data(), junk.size());
      while (auto f = r.next()) parse_startup(*f);
    } catch (const ProtocolError&) {
    }
  }
}

Message one(const std::string& bytes) {
  std::size_t size = 0;
  auto m = read_message(bytes, &size);
  EXPECT_TRUE(m.has_value());
  EXPECT_EQ(size, bytes.size());
  return m.value_or(Message{});
}

TEST(ServerCodecTest, ParsersAndBuildersRoundTrip) {
  std::string s;
  put_parameter_status(s, "DateStyle", "ISO, MDY");
  auto ps = parse_parameter_status(one(s).body);
  EXPECT_EQ(ps.first, "DateStyle");
  EXPECT_EQ(ps.second, "ISO, MDY");

  s.clear();
  put_backend_key_data(s, {-1, 123456789});
  auto key = parse_backend_key_data(one(s).body);
  EXPECT_EQ(key.pid, -1);
  EXPECT_EQ(key.key, 123456789);

  s.clear();
  put_ready_for_query(s, 'E');
  EXPECT_EQ(parse_ready_for_query(one(s).body), 'E');

  s.clear();
  put_error_response(s, "FATAL", "28P01", "password authentication failed");
  Message m = one(s);
  EXPECT_EQ(m.type, 'E');
  ErrorFields f = parse_error_fields(m.body);
  EXPECT_EQ(f.severity, "FATAL");
  EXPECT_EQ(f.sqlstate, "28P01");
  EXPECT_EQ(f.message, "password authentication failed");

  s.clear();
  put_auth_md5(s, {1, 2, 3, 4});
  AuthRequest a = parse_authentication(one(s).body);
  EXPECT_EQ(a.code, AuthCode::md5);
  EXPECT_EQ(a.salt, (std::array<unsigned char, 4>{1, 2, 3, 4}));

  s.clear();
  put_auth_sasl(s, {"SCRAM-SHA-256"});
  a = parse_authentication(one(s).body);
  EXPECT_EQ(a.code, AuthCode::sasl);
  ASSERT_EQ(a.mechanisms.size(), 1u);
  EXPECT_EQ(a.mechanisms[0], "SCRAM-SHA-256");

  s.clear();
  put_auth_sasl_continue(s, "r=abc,s=xyz,i=4096");
  a = parse_authentication(one(s).body);
  EXPECT_EQ(a.code, AuthCode::sasl_continue);
  EXPECT_EQ(a.data, "r=abc,s=xyz,i=4096");

  s.clear();
  put_auth_sasl_final(s, "v=sig");
  a = parse_authentication(one(s).body);
  EXPECT_EQ(a.code, AuthCode::sasl_final);
  EXPECT_EQ(a.data, "v=sig");

  s.clear();
  put_auth_ok(s);
  EXPECT_EQ(parse_authentication(one(s).body).code, AuthCode::ok);
  s.clear();
  put_auth_cleartext(s);
  EXPECT_EQ(parse_authentication(one(s).body).code, AuthCode::cleartext);

  s.clear();
  put_query(s, "SELECT 1");
  m = one(s);
  EXPECT_EQ(m.type, 'Q');
  EXPECT_EQ(parse_query(m.body), "SELECT 1");

  s.clear();
  put_password_message(s, "md5abc");
  EXPECT_EQ(parse_password(one(s).body), "md5abc");

  s.clear();
  put_sasl_initial_response(s, "SCRAM-SHA-256", "n,,n=,r=nonce");
  SaslInitial si = parse_sasl_initial_response(one(s).body);
  EXPECT_EQ(si.mechanism, "SCRAM-SHA-256");
  EXPECT_EQ(si.data, "n,,n=,r=nonce");

  s.clear();
  put_sasl_response(s, "c=biws,r=x,p=y");
  EXPECT_EQ(one(s).body, "c=biws,r=x,p=y");

  s.clear();
  put_command_complete(s, "SHOW");
  EXPECT_EQ(parse_command_complete(one(s).body), "SHOW");

  s.clear();
  put_sync(s);
  put_terminate(s);
  std::size_t size = 0;
  auto sync = read_message(s, &size);
  EXPECT_EQ(sync->type, 'S');
  EXPECT_EQ(size, 5u);
  auto term = read_message(std::string_view(s).substr(5), &size);
  EXPECT_EQ(term->type, 'X');

  s.clear();
  put_data_row(s, {std::string("x"), std::nullopt});
  m = one(s);
  EXPECT_EQ(m.type, 'D');
  EXPECT_EQ(m.body.size(), 2u + 4 + 1 + 4);
}

TEST(ServerCodecTest, TruncatedBodiesThrow) {
  EXPECT_THROW(parse_parameter_status(std::string_view("abc", 3)), ProtocolError);
  EXPECT_THROW(parse_backend_key_data(std::string_view("abc", 3)), ProtocolError);
  EXPECT_THROW(parse_ready_for_query(std::string_view("X", 1)), ProtocolError);
  EXPECT_THROW(parse_authentication(std::string_view("\0\0", 2)), ProtocolError);
  EXPECT_THROW(parse_sasl_initial_response(std::string_view("M\0\0\0\0\x09x", 7)), ProtocolError);
}

}  // namespace
}  // namespace reservoir::server::pg
