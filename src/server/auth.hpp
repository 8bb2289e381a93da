// src/server/auth.hpp: the cryptography of PostgreSQL authentication for reservoird, both ways:
// towards clients (reservoird is the server) and towards PostgreSQL (reservoird is the client).
// SCRAM-SHA-256 (RFC 5802, RFC 7677; PostgreSQL's SASL mechanism "SCRAM-SHA-256", no channel
// binding), md5 and plain passwords. OpenSSL does the hashing. Pure code: no sockets.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

namespace reservoir::server {

// A malformed message, a wrong proof or password: the text is safe to show the client (never a
// password or a proof).
class AuthError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// What auth_file holds for a user: a plain password, an md5 hash ("md5" + 32 hex), or a SCRAM
// verifier ("SCRAM-SHA-256$<iterations>:<base64 salt>$<base64 StoredKey>:<base64 ServerKey>").
struct Secret {
  enum class Kind : std::uint8_t { plain, md5, scram };
  Kind kind = Kind::plain;
  std::string text;                            // as written in auth_file
  static Secret parse(std::string_view text);  // kind from the prefix
};

// The server side of one SCRAM-SHA-256 exchange.
class ScramServer {
 public:
  // secret: plain (a verifier is derived with a random salt, 4096 iterations) or scram; md5
  // cannot serve SCRAM (throws AuthError). nonce: for tests; empty = 18 random bytes.
  explicit ScramServer(const Secret& secret, std::string nonce = {});
  // client-first-message (the SASLInitialResponse data) -> server-first-message.
  std::string first(std::string_view client_first);
  // client-final-message -> server-final-message ("v=<signature>"). Throws AuthError if the
  // proof is wrong.
  std::string final(std::string_view client_final);

 private:
  enum class State : std::uint8_t { want_first, want_final, done, failed };
  State state_ = State::want_first;
  std::uint32_t iterations_ = 0;
  std::string salt_b64_;
  std::array<unsigned char, 32> stored_key_{};
  std::array<unsigned char, 32> server_key_{};
  std::string nonce_;              // the server's part, then client's + server's
  std::string gs2_header_;         // "n,," or "y,,", as the client sent it
  std::string client_first_bare_;  // "n=...,r=..."
  std::string server_first_;
};

// The client side of one SCRAM-SHA-256 exchange (reservoird logging in to PostgreSQL).
class ScramClient {
 public:
  // nonce: for tests; empty = 18 random bytes.
  ScramClient(std::string user, std::string password, std::string nonce = {});
  // client-first-message ("n,,n=<user>,r=<nonce>", the user escaped as a saslname). PostgreSQL
  // ignores that user name (the startup packet's counts), and libpq sends "n=": an empty user
  // here does the same.
  std::string first();
  // server-first-message -> client-final-message. Throws AuthError on a malformed message or an
  // iteration count below 4096.
  std::string final(std::string_view server_first);
  // Checks the server-final-message. Throws AuthError if the server's signature is wrong.
  void verify(std::string_view server_final);

  ~ScramClient();  // wipes the password (best effort: copies made by moves are not tracked)
  ScramClient(ScramClient&&) = default;
  ScramClient& operator=(ScramClient&&) = default;
  ScramClient(const ScramClient&) = delete;  // no copies of the password
  ScramClient& operator=(const ScramClient&) = delete;

 private:
  enum class State : std::uint8_t { want_first, want_final, want_verify, done, failed };
  State state_ = State::want_first;
  std::string user_;
  std::string password_;
  std::string nonce_;
  std::string client_first_bare_;
  std::array<unsigned char, 32> server_signature_{};  // what verify() expects
};

// A SCRAM-SHA-256 verifier in PostgreSQL's format from a password (taken as-is, see auth.cpp on
// SASLprep), a base64 salt and an iteration count (>= 1). Throws AuthError on a bad salt.
std::string scram_verifier(std::string_view password, std::string_view salt_base64,
                           std::uint32_t iterations);

// n bytes from OpenSSL's CSPRNG (salts, nonces, cancel keys). Throws AuthError if it fails.
std::string random_bytes(std::size_t n);

// md5: PostgreSQL's "md5" + md5hex(md5hex(password + user) + salt).
std::string md5_hash(std::string_view user, std::string_view password);  // "md5" + 32 hex
std::string md5_response(std::string_view md5_hash_of_user, std::array<unsigned char, 4> salt);
// Checks a client's md5 response against a plain or md5 secret (not scram: throws AuthError).
bool md5_check(const Secret& secret, std::string_view user, std::array<unsigned char, 4> salt,
               std::string_view response);
// Checks a cleartext password against a plain, md5 or scram secret.
bool plain_check(const Secret& secret, std::string_view user, std::string_view password);

}  // namespace reservoir::server
