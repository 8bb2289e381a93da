// tests/unit/server_auth_test.cpp: reservoird's authentication cryptography: SCRAM-SHA-256 against
// RFC 7677's example and a verifier made by PostgreSQL 15, md5 and plain checks.
#include <gtest/gtest.h>

#include <string>

#include "server/auth.hpp"

namespace reservoir::server {
namespace {

// RFC 7677, section 3.
constexpr const char* kRfcClientNonce = "rOprNGfwEbeRWgbNEkqO";
constexpr const char* kRfcServerNonce = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
constexpr const char* kRfcSalt = "W22ZaJ0SNY7soEsUEjb6gQ==";
constexpr const char* kRfcClientFirst = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
constexpr const char* kRfcServerFirst =
    "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
constexpr const char* kRfcClientFinal =
    "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
    "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
constexpr const char* kRfcServerFinal = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";
// The verifier for "pencil" with the RFC's salt, computed independently (Python's hashlib).
constexpr const char* kRfcVerifier =
    "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:"
    "wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
// pg_authid.rolpassword of a role created with PASSWORD 'pw' by PostgreSQL 15.
constexpr const char* kPostgresVerifier =
    "SCRAM-SHA-256$4096:/zJg9c5OSYyZ4BL94NcEYQ==$GJUc0G+Z+9NeT/ZqOUHVdrxVbIEG85wtPuyPAX3qeY8=:"
    "cOnzSCka83FgqGhte5/VBqmFHvM2B7mjk8WAkQmkq4g=";

constexpr const char* kNonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";

// A whole exchange; throws AuthError where it fails.
void exchange(const Secret& secret, const std::string& password) {
  ScramClient client("", password);
  ScramServer server(secret);
  const std::string server_first = server.first(client.first());
  const std::string server_final = server.final(client.final(server_first));
  client.verify(server_final);
}

TEST(ScramVerifier, MatchesAnIndependentComputation) {
  EXPECT_EQ(scram_verifier("pencil", kRfcSalt, 4096), kRfcVerifier);
  EXPECT_THROW(scram_verifier("pencil", "not base64!", 4096), AuthError);
}

TEST(ScramServer, Rfc7677Example) {
  ScramServer server(Secret::parse(kRfcVerifier), kRfcServerNonce);
  EXPECT_EQ(server.first(kRfcClientFirst), kRfcServerFirst);
  EXPECT_EQ(server.final(kRfcClientFinal), kRfcServerFinal);
}

TEST(ScramClient, Rfc7677Example) {
  ScramClient client("user", "pencil", kRfcClientNonce);
  EXPECT_EQ(client.first(), kRfcClientFirst);
  EXPECT_EQ(client.final(kRfcServerFirst), kRfcClientFinal);
  EXPECT_NO_THROW(client.verify(kRfcServerFinal));
}

TEST(ScramClient, FirstMessageEscapesTheUserAndMayOmitIt) {
  ScramClient libpq_like("", "pw", "abc");
  EXPECT_EQ(libpq_like.first(), "n,,n=,r=abc");
  ScramClient odd("a=b,c", "pw", "abc");
  EXPECT_EQ(odd.first(), "n,,n=a=3Db=2Cc,r=abc");
}

TEST(ScramClient, MovesMidExchange) {
  ScramClient first("user", "pencil", kRfcClientNonce);
  EXPECT_EQ(first.first(), kRfcClientFirst);
  ScramClient moved = std::move(first);
  EXPECT_EQ(moved.final(kRfcServerFirst), kRfcClientFinal);
  EXPECT_NO_THROW(moved.verify(kRfcServerFinal));
}

TEST(ScramClient, RejectsAWrongServerSignature) {
  ScramClient client("user", "pencil", kRfcClientNonce);
  client.first();
  client.final(kRfcServerFirst);
  EXPECT_THROW(client.verify("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="), AuthError);
}

TEST(ScramClient, ReportsTheServersError) {
  ScramClient client("user", "pencil", kRfcClientNonce);
  client.first();
  client.final(kRfcServerFirst);
  try {
    client.verify("e=invalid-proof");
    FAIL() << "no AuthError";
  } catch (const AuthError& e) {
    EXPECT_NE(std::string(e.what()).find("invalid-proof"), std::string::npos);
  }
}

TEST(Scram, RoundTripWithAPlainSecret) {
  EXPECT_NO_THROW(exchange(Secret::parse("s3cret pass"), "s3cret pass"));
  EXPECT_THROW(exchange(Secret::parse("s3cret pass"), "s3cret pasS"), AuthError);
}

TEST(Scram, RoundTripWithAVerifier) {
  EXPECT_NO_THROW(exchange(Secret::parse(kRfcVerifier), "pencil"));
  EXPECT_THROW(exchange(Secret::parse(kRfcVerifier), "pencil2"), AuthError);
}

TEST(Scram, InteroperatesWithAPostgresVerifier) {
  EXPECT_NO_THROW(exchange(Secret::parse(kPostgresVerifier), "pw"));
  EXPECT_THROW(exchange(Secret::parse(kPostgresVerifier), "px"), AuthError);
}

TEST(Scram, WrongPasswordMessageIsSafe) {
  ScramClient client("", "wrong");
  ScramServer server(Secret::parse("right"));
  const std::string client_final = client.final(server.first(client.first()));
  try {
    server.final(client_final);
    FAIL() << "no AuthError";
  } catch (const AuthError& e) {
    EXPECT_STREQ(e.what(), "password authentication failed");
  }
}

TEST(Scram, RandomNoncesDifferAndArePrintable) {
  ScramClient a("", "pw");
  ScramClient b("", "pw");
  const std::string fa = a.first();
  EXPECT_NE(fa, b.first());
  for (char c : fa.substr(fa.find("r=") + 2)) {
    EXPECT_TRUE(c >= 0x21 && c <= 0x7e && c != ',') << c;
  }
  ScramServer s1(Secret::parse("pw"));
  ScramServer s2(Secret::parse("pw"));
  EXPECT_NE(s1.first("n,,n=,r=x"), s2.first("n,,n=,r=x"));
}

TEST(ScramServer, RefusesAnMd5Secret) {
  EXPECT_THROW(ScramServer(Secret::parse("md553f48b7c4b76a86ce72276c5755f217d")), AuthError);
}

class ScramServerMalformed : public ::testing::Test {
 protected:
  ScramServer server_{Secret::parse(kRfcVerifier), kRfcServerNonce};
};

TEST_F(ScramServerMalformed, ClientFirst) {
  for (const char* bad : {
           "", "n", "n,",
           "x,,n=user,r=abc",        // unknown channel-binding flag
           "p=tls-unique,,n=,r=a",   // channel binding asked for
           "n,a=admin,n=,r=abc",     // authzid
           "n,,r=abc",               // no n=
           "n,,n=user",              // no r=
           "n,,n=user,r=",           // empty nonce
           "n,,r=abc,n=user",        // out of order
           "n,,m=ext,n=user,r=abc",  // mandatory extension
           "n,,n=user,,r=abc",       // empty attribute
           "n,,n=user,rabc",         // no '='
       }) {
    ScramServer server(Secret::parse(kRfcVerifier), kRfcServerNonce);
    EXPECT_THROW(server.first(bad), AuthError) << bad;
  }
}

TEST_F(ScramServerMalformed, ClientFinal) {
  const std::string proof = "p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
  const std::string nonce = std::string("r=") + kNonce;
  for (const std::string& bad : {
           std::string(""),
           "c=biws," + nonce,                              // no proof
           nonce + "," + proof,                            // no c=
           "c=biws," + proof,                              // no r=
           "c=biws,r=rOprNGfwEbeRWgbNEkqOwrong," + proof,  // wrong nonce
           "c=biws,r=rOprNGfwEbeRWgbNEkqO," + proof,       // the client's nonce only
           "c=eSws," + nonce + "," + proof,                // "y,," but the client sent "n,,"
           "c=bi*s," + nonce + "," + proof,                // bad base64
           "c=biws," + nonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ",    // no padding
           "c=biws," + nonce + ",p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=x",  // trailing
           "c=biws," + nonce + ",p=AAAA",                                           // short proof
           "c=biws," + nonce + ",p=" + std::string(44, '='),                        // all padding
           "c=biws," + proof + "," + nonce,                                         // out of order
       }) {
    ScramServer server(Secret::parse(kRfcVerifier), kRfcServerNonce);
    server.first(kRfcClientFirst);
    EXPECT_THROW(server.final(bad), AuthError) << bad;
  }
  // The right proof still passes after all that (the fixture's server was never used).
  server_.first(kRfcClientFirst);
  EXPECT_EQ(server_.final(kRfcClientFinal), kRfcServerFinal);
}

TEST_F(ScramServerMalformed, MessagesOutOfOrder) {
  EXPECT_THROW(server_.final(kRfcClientFinal), AuthError);
  server_.first(kRfcClientFirst);
  EXPECT_THROW(server_.first(kRfcClientFirst), AuthError);
}

TEST(ScramClientMalformed, ServerFirst) {
  for (const char* bad : {
           "",
           "s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",                            // no r=
           "r=rOprNGfwEbeRWgbNEkqOxyz,i=4096",                             // no s=
           "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==",         // no i=
           "r=XXprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",  // not our nonce
           "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",     // nothing added
           "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ=,i=4096",   // bad base64
           "r=rOprNGfwEbeRWgbNEkqOxyz,s=,i=4096",                          // empty salt
           "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1",     // iteration count 1
           "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4095",
           "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=-4096",
           "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=99999999999",
           "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=",
           "r=rOprNGfwEbeRWgbNEkqOxyz,i=4096,s=W22ZaJ0SNY7soEsUEjb6gQ==",  // out of order
           "m=x,r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",
       }) {
    ScramClient client("user", "pencil", kRfcClientNonce);
    client.first();
    EXPECT_THROW(client.final(bad), AuthError) << bad;
  }
}

TEST(ScramClientMalformed, ServerFinalAndOrder) {
  ScramClient early("user", "pencil", kRfcClientNonce);
  EXPECT_THROW(early.final(kRfcServerFirst), AuthError);  // before first()
  for (const char* bad : {"", "v=", "v=6rriTRBi23WpRR", "x=abc", "6rriTRBi23WpRR"}) {
    ScramClient client("user", "pencil", kRfcClientNonce);
    client.first();
    client.final(kRfcServerFirst);
    EXPECT_THROW(client.verify(bad), AuthError) << bad;
  }
}

TEST(Secret, KindFromThePrefix) {
  EXPECT_EQ(Secret::parse("hunter2").kind, Secret::Kind::plain);
  EXPECT_EQ(Secret::parse("").kind, Secret::Kind::plain);
  EXPECT_EQ(Secret::parse("md553f48b7c4b76a86ce72276c5755f217d").kind, Secret::Kind::md5);
  // Not 32 hex digits after "md5": a plain password, as in PostgreSQL and PgBouncer.
  EXPECT_EQ(Secret::parse("md5abc").kind, Secret::Kind::plain);
  EXPECT_EQ(Secret::parse("md553f48b7c4b76a86ce72276c5755f217z").kind, Secret::Kind::plain);
  const Secret scram = Secret::parse(kPostgresVerifier);
  EXPECT_EQ(scram.kind, Secret::Kind::scram);
  EXPECT_EQ(scram.text, kPostgresVerifier);
  // A malformed verifier is refused rather than taken as a plain password.
  EXPECT_THROW(Secret::parse("SCRAM-SHA-256$4096:abc"), AuthError);
  EXPECT_THROW(Secret::parse("SCRAM-SHA-256$0:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkB"
                             "FzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU="),
               AuthError);
  EXPECT_THROW(Secret::parse("SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$AAAA:AAAA"), AuthError);
}

// md5("secret" + "postgres"), computed with Python's hashlib.
constexpr const char* kMd5PostgresSecret = "md553f48b7c4b76a86ce72276c5755f217d";
// md5(hex of the above + bytes 01 02 03 04), computed with Python's hashlib.
constexpr const char* kMd5Response = "md5bb41a296aab6baccb36ff243a562abff";
constexpr std::array<unsigned char, 4> kSalt{1, 2, 3, 4};

TEST(Md5, KnownValues) {
  EXPECT_EQ(md5_hash("postgres", "secret"), kMd5PostgresSecret);
  EXPECT_EQ(md5_response(kMd5PostgresSecret, kSalt), kMd5Response);
  EXPECT_EQ(md5_response(std::string(kMd5PostgresSecret).substr(3), kSalt), kMd5Response);
  EXPECT_THROW(md5_response("md5xyz", kSalt), AuthError);
}

TEST(Md5, CheckEachSecretKind) {
  const Secret plain = Secret::parse("secret");
  const Secret md5 = Secret::parse(kMd5PostgresSecret);
  EXPECT_TRUE(md5_check(plain, "postgres", kSalt, kMd5Response));
  EXPECT_TRUE(md5_check(md5, "postgres", kSalt, kMd5Response));
  EXPECT_FALSE(md5_check(plain, "postgres", {1, 2, 3, 5}, kMd5Response));
  EXPECT_FALSE(md5_check(md5, "other", kSalt, md5_response(md5_hash("other", "wrong"), kSalt)));
  EXPECT_FALSE(md5_check(plain, "postgres", kSalt, "md5"));
  EXPECT_FALSE(md5_check(plain, "postgres", kSalt, ""));
  EXPECT_THROW(md5_check(Secret::parse(kPostgresVerifier), "x", kSalt, kMd5Response), AuthError);
}

TEST(Plain, CheckEachSecretKind) {
  EXPECT_TRUE(plain_check(Secret::parse("secret"), "postgres", "secret"));
  EXPECT_FALSE(plain_check(Secret::parse("secret"), "postgres", "secreT"));
  EXPECT_FALSE(plain_check(Secret::parse("secret"), "postgres", "secret2"));
  EXPECT_TRUE(plain_check(Secret::parse(kMd5PostgresSecret), "postgres", "secret"));
  EXPECT_FALSE(plain_check(Secret::parse(kMd5PostgresSecret), "other", "secret"));
  EXPECT_FALSE(plain_check(Secret::parse(kMd5PostgresSecret), "postgres", "wrong"));
  EXPECT_TRUE(plain_check(Secret::parse(kPostgresVerifier), "x", "pw"));
  EXPECT_FALSE(plain_check(Secret::parse(kPostgresVerifier), "x", "px"));
  EXPECT_TRUE(plain_check(Secret::parse(kRfcVerifier), "user", "pencil"));
}

}  // namespace
}  // namespace reservoir::server
