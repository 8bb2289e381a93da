// src/drivers/common/openssl_exit.cpp: OPENSSL_INIT_NO_ATEXIT on OpenSSL's first initialisation.
#include "drivers/common/openssl_exit.hpp"

#include <openssl/crypto.h>
#include <openssl/ssl.h>

namespace reservoir::drivers {

void keep_openssl_until_exit() noexcept {
  OPENSSL_init_crypto(OPENSSL_INIT_NO_ATEXIT, nullptr);
  OPENSSL_init_ssl(OPENSSL_INIT_NO_ATEXIT, nullptr);
}

}  // namespace reservoir::drivers
