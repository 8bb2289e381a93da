// src/server/auth.cpp: SCRAM-SHA-256 (both sides), md5 and plain password checks for reservoird,
// on OpenSSL's SHA-256, HMAC, PBKDF2, MD5, base64 and random numbers.
//
// SASLprep (RFC 4013) is not applied: the password is used as-is. PostgreSQL does the same
// whenever SASLprep fails (a password that is not valid UTF-8 or holds prohibited characters),
// and for the ASCII passwords almost everyone uses SASLprep changes nothing. A non-ASCII password
// that SASLprep would normalise therefore only works here if the verifier was built from the same
// raw bytes.
#include "server/auth.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include <algorithm>
#include <charconv>
#include <limits>
#include <vector>

namespace reservoir::server {
namespace {

using Key = std::array<unsigned char, 32>;

constexpr std::uint32_t kMinClientIterations = 4096;  // RFC 7677's minimum
constexpr std::uint32_t kDefaultIterations = 4096;    // PostgreSQL's scram_iterations default
constexpr std::size_t kSaltBytes = 16;                // PostgreSQL's SCRAM_DEFAULT_SALT_LEN
constexpr std::size_t kNonceBytes = 18;               // PostgreSQL's SCRAM_RAW_NONCE_LEN
constexpr std::string_view kVerifierPrefix = "SCRAM-SHA-256$";

const unsigned char* bytes(std::string_view s) {
  return reinterpret_cast<const unsigned char*>(s.data());
}

std::string_view view(const Key& k) { return {reinterpret_cast<const char*>(k.data()), k.size()}; }

bool equal_ct(std::string_view a, std::string_view b) {
  // The lengths are not secret (a hash, a proof, a known-length response).
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

Key sha256(std::string_view data) {
  Key out{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1 ||
      len != out.size()) {
    throw AuthError("SHA-256 failed");
  }
  return out;
}

Key hmac_sha256(std::string_view key, std::string_view data) {
  Key out{};
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), bytes(data), data.size(),
           out.data(), &len) == nullptr ||
      len != out.size()) {
    throw AuthError("HMAC-SHA-256 failed");
  }
  return out;
}

// RFC 5802's Hi(): PBKDF2 with HMAC-SHA-256 and one output block.
Key salted_password(std::string_view password, std::string_view salt, std::uint32_t iterations) {
  if (iterations == 0 || iterations > static_cast<std::uint32_t>(std::numeric_limits<int>::max()) ||
      password.size() > static_cast<std::size_t>(std::numeric_limits<int>::max()) ||
      salt.size() > static_cast<std::size_t>(std::numeric_limits<int>::max())) {
    throw AuthError("SCRAM parameters out of range");
  }
  Key out{};
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()), bytes(salt),
                        static_cast<int>(salt.size()), static_cast<int>(iterations), EVP_sha256(),
                        static_cast<int>(out.size()), out.data()) != 1) {
    throw AuthError("PBKDF2 failed");
  }
  return out;
}

std::string base64_encode(std::string_view data) {
  std::string out(4 * ((data.size() + 2) / 3), '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes(data),
                                static_cast<int>(data.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

bool is_base64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

// Strict base64: whole quads, the standard alphabet, '=' only as the final padding. (OpenSSL's
// EVP_DecodeBlock skips surrounding whitespace and returns the padding as zero bytes; both are
// handled here.)
std::optional<std::string> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return std::nullopt;
  std::size_t pad = 0;
  if (!text.empty() && text.back() == '=') ++pad;
  if (text.size() >= 2 && text[text.size() - 2] == '=') ++pad;
  for (std::size_t i = 0; i < text.size() - pad; ++i) {
    if (!is_base64_char(text[i])) return std::nullopt;
  }
  if (text.empty()) return std::string();
  std::string out(text.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()), bytes(text),
                                static_cast<int>(text.size()));
  if (n < 0 || static_cast<std::size_t>(n) != out.size()) return std::nullopt;
  out.resize(out.size() - pad);
  return out;
}

// A printable nonce (base64 never holds ','), as PostgreSQL makes its own.
std::string random_nonce() { return base64_encode(random_bytes(kNonceBytes)); }

// RFC 5802: printable = %x21-2B / %x2D-7E (no ',').
bool is_printable_nonce(std::string_view s) {
  return !s.empty() &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x21 && c <= 0x7e && c != ','; });
}

Key xor_keys(const Key& a, const Key& b) {
  Key out{};
  for (std::size_t i = 0; i < out.size(); ++i) out[i] = a[i] ^ b[i];
  return out;
}

Key to_key(std::string_view s) {
  Key k{};
  std::copy(s.begin(), s.end(), k.begin());
  return k;
}

// "name=value" attributes separated by ','. Values never hold ',' (nonces exclude it, base64
// lacks it, saslnames escape it), so splitting on ',' is exact.
struct Attribute {
  char name;
  std::string_view value;
};

std::vector<Attribute> split_attributes(std::string_view text, std::string_view what) {
  std::vector<Attribute> out;
  std::size_t pos = 0;
  while (true) {
    const std::size_t comma = text.find(',', pos);
    const std::string_view part =
        text.substr(pos, comma == std::string_view::npos ? std::string_view::npos : comma - pos);
    if (part.size() < 2 || part[1] != '=' ||
        !((part[0] >= 'a' && part[0] <= 'z') || (part[0] >= 'A' && part[0] <= 'Z'))) {
      throw AuthError("malformed SCRAM " + std::string(what) + ": bad attribute");
    }
    out.push_back({part[0], part.substr(2)});
    if (comma == std::string_view::npos) break;
    pos = comma + 1;
  }
  return out;
}

void expect_attribute(const std::vector<Attribute>& attrs, std::size_t index, char name,
                      std::string_view what) {
  if (index >= attrs.size() || attrs[index].name != name) {
    throw AuthError("malformed SCRAM " + std::string(what) + ": expected attribute '" +
                    std::string(1, name) + "'");
  }
}

std::string saslname(std::string_view user) {
  std::string out;
  for (char c : user) {
    if (c == '=') {
      out += "=3D";
    } else if (c == ',') {
      out += "=2C";
    } else {
      out += c;
    }
  }
  return out;
}

std::optional<std::uint32_t> parse_u32(std::string_view s) {
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  std::uint32_t v = 0;
  const auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

struct Verifier {
  std::uint32_t iterations = 0;
  std::string salt_b64;
  Key stored_key{};
  Key server_key{};
};

// "SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>"; nullopt if malformed.
std::optional<Verifier> parse_verifier(std::string_view text) {
  if (text.substr(0, kVerifierPrefix.size()) != kVerifierPrefix) return std::nullopt;
  text.remove_prefix(kVerifierPrefix.size());
  const std::size_t colon1 = text.find(':');
  const std::size_t dollar = text.find('$');
  if (colon1 == std::string_view::npos || dollar == std::string_view::npos || dollar < colon1) {
    return std::nullopt;
  }
  const std::size_t colon2 = text.find(':', dollar);
  if (colon2 == std::string_view::npos) return std::nullopt;
  Verifier v;
  const auto iterations = parse_u32(text.substr(0, colon1));
  if (!iterations || *iterations == 0 ||
      *iterations > static_cast<std::uint32_t>(std::numeric_limits<int>::max())) {
    return std::nullopt;
  }
  v.iterations = *iterations;
  v.salt_b64 = std::string(text.substr(colon1 + 1, dollar - colon1 - 1));
  const auto salt = base64_decode(v.salt_b64);
  const auto stored = base64_decode(text.substr(dollar + 1, colon2 - dollar - 1));
  const auto server = base64_decode(text.substr(colon2 + 1));
  if (!salt || salt->empty() || !stored || stored->size() != 32 || !server ||
      server->size() != 32) {
    return std::nullopt;
  }
  v.stored_key = to_key(*stored);
  v.server_key = to_key(*server);
  return v;
}

Verifier make_verifier(std::string_view password, std::string_view salt, std::uint32_t iterations) {
  const Key salted = salted_password(password, salt, iterations);
  const std::string_view salted_view = view(salted);
  Verifier v;
  v.iterations = iterations;
  v.salt_b64 = base64_encode(salt);
  v.stored_key = sha256(view(hmac_sha256(salted_view, "Client Key")));
  v.server_key = hmac_sha256(salted_view, "Server Key");
  return v;
}

std::string md5_hex(std::string_view data) {
  unsigned char digest[16];
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), digest, &len, EVP_md5(), nullptr) != 1 || len != 16) {
    throw AuthError("MD5 failed");
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(32, '\0');
  for (std::size_t i = 0; i < 16; ++i) {
    out[2 * i] = kHex[digest[i] >> 4];
    out[2 * i + 1] = kHex[digest[i] & 0xf];
  }
  return out;
}

bool is_hex(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
  });
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

}  // namespace

std::string random_bytes(std::size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1) {
    throw AuthError("cannot generate random bytes");
  }
  return out;
}

// --- Secret ------------------------------------------------------------------------------------

Secret Secret::parse(std::string_view text) {
  Secret s;
  s.text = std::string(text);
  if (text.size() == 35 && text.substr(0, 3) == "md5" && is_hex(text.substr(3))) {
    s.kind = Kind::md5;
  } else if (text.substr(0, kVerifierPrefix.size()) == kVerifierPrefix) {
    // PostgreSQL would take a malformed verifier for a plain password; a typo would then make
    // the verifier's text the password. Refuse it instead.
    if (!parse_verifier(text)) throw AuthError("malformed SCRAM-SHA-256 verifier");
    s.kind = Kind::scram;
  } else {
    s.kind = Kind::plain;
  }
  return s;
}

std::string scram_verifier(std::string_view password, std::string_view salt_base64,
                           std::uint32_t iterations) {
  const auto salt = base64_decode(salt_base64);
  if (!salt || salt->empty()) throw AuthError("SCRAM salt is not base64");
  const Verifier v = make_verifier(password, *salt, iterations);
  return std::string(kVerifierPrefix) + std::to_string(v.iterations) + ":" + v.salt_b64 + "$" +
         base64_encode(view(v.stored_key)) + ":" + base64_encode(view(v.server_key));
}

// --- ScramServer -------------------------------------------------------------------------------

ScramServer::ScramServer(const Secret& secret, std::string nonce)
    : nonce_(nonce.empty() ? random_nonce() : std::move(nonce)) {
  Verifier v;
  switch (secret.kind) {
    case Secret::Kind::plain:
      v = make_verifier(secret.text, random_bytes(kSaltBytes), kDefaultIterations);
      break;
    case Secret::Kind::scram: {
      auto parsed = parse_verifier(secret.text);
      if (!parsed) throw AuthError("malformed SCRAM-SHA-256 verifier");
      v = std::move(*parsed);
      break;
    }
    case Secret::Kind::md5:
      throw AuthError("an md5 password cannot serve SCRAM-SHA-256 authentication");
  }
  iterations_ = v.iterations;
  salt_b64_ = std::move(v.salt_b64);
  stored_key_ = v.stored_key;
  server_key_ = v.server_key;
}

std::string ScramServer::first(std::string_view client_first) {
  if (state_ != State::want_first) throw AuthError("unexpected SCRAM client-first-message");
  state_ = State::failed;  // until this message is accepted
  constexpr std::string_view what = "client-first-message";
  // gs2-header: cbind-flag "," [authzid] ","
  if (client_first.empty()) throw AuthError("malformed SCRAM client-first-message: empty");
  const char flag = client_first[0];
  if (flag == 'p') {
    throw AuthError("SCRAM channel binding is not supported (use SCRAM-SHA-256)");
  }
  if ((flag != 'n' && flag != 'y') || client_first.size() < 2 || client_first[1] != ',') {
    throw AuthError("malformed SCRAM client-first-message: bad channel-binding flag");
  }
  if (client_first.size() < 3 || client_first[2] != ',') {
    if (client_first.substr(2, 2) == "a=") {
      throw AuthError("SCRAM authorization identity is not supported");
    }
    throw AuthError("malformed SCRAM client-first-message: bad gs2 header");
  }
  gs2_header_ = std::string(client_first.substr(0, 3));
  const std::string_view bare = client_first.substr(3);
  const auto attrs = split_attributes(bare, what);
  if (!attrs.empty() && attrs[0].name == 'm') {
    throw AuthError("SCRAM mandatory extensions are not supported");
  }
  // n=: PostgreSQL ignores the user name here; the startup packet's counts.
  expect_attribute(attrs, 0, 'n', what);
  expect_attribute(attrs, 1, 'r', what);
  if (!is_printable_nonce(attrs[1].value)) {
    throw AuthError("malformed SCRAM client-first-message: bad nonce");
  }
  // Any further attributes are extensions, which are ignored (RFC 5802, as PostgreSQL does).
  client_first_bare_ = std::string(bare);
  nonce_ = std::string(attrs[1].value) + nonce_;
  server_first_ = "r=" + nonce_ + ",s=" + salt_b64_ + ",i=" + std::to_string(iterations_);
  state_ = State::want_final;
  return server_first_;
}

std::string ScramServer::final(std::string_view client_final) {
  if (state_ != State::want_final) throw AuthError("unexpected SCRAM client-final-message");
  state_ = State::failed;
  constexpr std::string_view what = "client-final-message";
  const auto attrs = split_attributes(client_final, what);
  expect_attribute(attrs, 0, 'c', what);
  expect_attribute(attrs, 1, 'r', what);
  if (attrs.size() < 3 || attrs.back().name != 'p') {
    throw AuthError("malformed SCRAM client-final-message: expected attribute 'p'");
  }
  const auto cbind = base64_decode(attrs[0].value);
  if (!cbind) throw AuthError("malformed SCRAM client-final-message: channel binding not base64");
  if (*cbind != gs2_header_) throw AuthError("SCRAM channel binding does not match");
  if (attrs[1].value != nonce_) throw AuthError("SCRAM nonce does not match");
  const auto proof = base64_decode(attrs.back().value);
  if (!proof || proof->size() != 32) {
    throw AuthError("malformed SCRAM client-final-message: bad proof");
  }
  // Everything before ",p=" (the proof is the last attribute and values hold no ',').
  const std::string_view without_proof = client_final.substr(0, client_final.rfind(','));
  const std::string auth_message =
      client_first_bare_ + "," + server_first_ + "," + std::string(without_proof);
  const Key client_signature = hmac_sha256(view(stored_key_), auth_message);
  const Key client_key = xor_keys(to_key(*proof), client_signature);
  if (!equal_ct(view(sha256(view(client_key))), view(stored_key_))) {
    throw AuthError("password authentication failed");
  }
  state_ = State::done;
  return "v=" + base64_encode(view(hmac_sha256(view(server_key_), auth_message)));
}

// --- ScramClient -------------------------------------------------------------------------------

ScramClient::ScramClient(std::string user, std::string password, std::string nonce)
    : user_(std::move(user)),
      password_(std::move(password)),
      nonce_(nonce.empty() ? random_nonce() : std::move(nonce)) {
  if (!is_printable_nonce(nonce_)) throw AuthError("bad SCRAM client nonce");
}

ScramClient::~ScramClient() {
  OPENSSL_cleanse(password_.data(), password_.size());
  OPENSSL_cleanse(server_signature_.data(), server_signature_.size());
}

std::string ScramClient::first() {
  if (state_ != State::want_first) throw AuthError("SCRAM client-first-message already sent");
  client_first_bare_ = "n=" + saslname(user_) + ",r=" + nonce_;
  state_ = State::want_final;
  return "n,," + client_first_bare_;
}

std::string ScramClient::final(std::string_view server_first) {
  if (state_ != State::want_final) throw AuthError("unexpected SCRAM server-first-message");
  state_ = State::failed;
  constexpr std::string_view what = "server-first-message";
  const auto attrs = split_attributes(server_first, what);
  if (!attrs.empty() && attrs[0].name == 'm') {
    throw AuthError("SCRAM mandatory extensions are not supported");
  }
  expect_attribute(attrs, 0, 'r', what);
  expect_attribute(attrs, 1, 's', what);
  expect_attribute(attrs, 2, 'i', what);
  const std::string_view nonce = attrs[0].value;
  if (!is_printable_nonce(nonce) || nonce.size() <= nonce_.size() ||
      nonce.substr(0, nonce_.size()) != nonce_) {
    throw AuthError("SCRAM server nonce does not extend the client's");
  }
  const auto salt = base64_decode(attrs[1].value);
  if (!salt || salt->empty()) throw AuthError("malformed SCRAM server-first-message: bad salt");
  const auto iterations = parse_u32(attrs[2].value);
  if (!iterations) {
    throw AuthError("malformed SCRAM server-first-message: bad iteration count");
  }
  if (*iterations < kMinClientIterations) {
    throw AuthError("SCRAM iteration count " + std::to_string(*iterations) + " is below " +
                    std::to_string(kMinClientIterations));
  }
  const Key salted = salted_password(password_, *salt, *iterations);
  const Key client_key = hmac_sha256(view(salted), "Client Key");
  const Key stored_key = sha256(view(client_key));
  const Key server_key = hmac_sha256(view(salted), "Server Key");
  const std::string without_proof = "c=biws,r=" + std::string(nonce);
  const std::string auth_message =
      client_first_bare_ + "," + std::string(server_first) + "," + without_proof;
  const Key proof = xor_keys(client_key, hmac_sha256(view(stored_key), auth_message));
  server_signature_ = hmac_sha256(view(server_key), auth_message);
  state_ = State::want_verify;
  return without_proof + ",p=" + base64_encode(view(proof));
}

void ScramClient::verify(std::string_view server_final) {
  if (state_ != State::want_verify) throw AuthError("unexpected SCRAM server-final-message");
  state_ = State::failed;
  constexpr std::string_view what = "server-final-message";
  const auto attrs = split_attributes(server_final, what);
  if (attrs[0].name == 'e') {
    throw AuthError("SCRAM authentication failed on the server: " + std::string(attrs[0].value));
  }
  expect_attribute(attrs, 0, 'v', what);
  const auto signature = base64_decode(attrs[0].value);
  if (!signature || signature->size() != 32) {
    throw AuthError("malformed SCRAM server-final-message: bad signature");
  }
  if (!equal_ct(*signature, view(server_signature_))) {
    throw AuthError("SCRAM server signature is wrong");
  }
  state_ = State::done;
}

// --- md5 and plain -----------------------------------------------------------------------------

std::string md5_hash(std::string_view user, std::string_view password) {
  std::string data(password);
  data += user;
  std::string out = "md5" + md5_hex(data);
  OPENSSL_cleanse(data.data(), data.size());
  return out;
}

std::string md5_response(std::string_view md5_hash_of_user, std::array<unsigned char, 4> salt) {
  std::string_view hex = md5_hash_of_user;
  if (hex.size() == 35 && hex.substr(0, 3) == "md5") hex.remove_prefix(3);
  if (hex.size() != 32 || !is_hex(hex)) throw AuthError("malformed md5 password hash");
  std::string data = lower(hex);
  data.append(reinterpret_cast<const char*>(salt.data()), salt.size());
  return "md5" + md5_hex(data);
}

bool md5_check(const Secret& secret, std::string_view user, std::array<unsigned char, 4> salt,
               std::string_view response) {
  std::string hash;
  switch (secret.kind) {
    case Secret::Kind::plain:
      hash = md5_hash(user, secret.text);
      break;
    case Secret::Kind::md5:
      hash = secret.text;
      break;
    case Secret::Kind::scram:
      throw AuthError("a SCRAM-SHA-256 verifier cannot serve md5 authentication");
  }
  return equal_ct(md5_response(hash, salt), response);
}

bool plain_check(const Secret& secret, std::string_view user, std::string_view password) {
  switch (secret.kind) {
    case Secret::Kind::plain:
      return equal_ct(secret.text, password);
    case Secret::Kind::md5:
      return equal_ct(md5_hash(user, password), lower(secret.text));
    case Secret::Kind::scram: {
      const auto v = parse_verifier(secret.text);
      if (!v) throw AuthError("malformed SCRAM-SHA-256 verifier");
      const Verifier mine = make_verifier(password, *base64_decode(v->salt_b64), v->iterations);
      // Both keys, without short-circuiting on the first.
      const bool stored = equal_ct(view(mine.stored_key), view(v->stored_key));
      const bool server = equal_ct(view(mine.server_key), view(v->server_key));
      return stored && server;
    }
  }
  return false;
}

}  // namespace reservoir::server
