// tests/support/fixture_util.cpp: see fixture_util.hpp.
#include "support/fixture_util.hpp"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>

#include "reservoir/driver.hpp"
#include "reservoir/dsn.hpp"
#include "reservoir/error.hpp"

namespace reservoir::testing::fixture {

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : std::string();
}

std::map<std::string, std::string> read_state(const std::filesystem::path& file) {
  std::map<std::string, std::string> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    const std::size_t eq = line.find('=');
    if (eq != std::string::npos) out[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return out;
}

bool answers(std::string_view driver_name, const std::string& dsn) {
  const auto driver = find_driver(std::string(driver_name));
  if (!driver) return false;
  try {
    driver->connect(Dsn::parse(dsn), std::chrono::seconds(3))->ping();
    return true;
  } catch (const Error&) {
    return false;
  }
}

int run_script(std::string_view script, const std::string& args, std::string* output) {
  const std::string command = "'" + std::string(script) + "' " + args + " </dev/null 2>&1";
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) return -1;
  char buffer[4096];
  std::size_t n = 0;
  while ((n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0) {
    if (output != nullptr) output->append(buffer, n);
  }
  const int status = ::pclose(pipe);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

std::string unique_name(std::string_view prefix, int* counter) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string test = info != nullptr ? std::string(info->test_suite_name()) + "_" + info->name()
                                     : std::string("test");
  std::string clean;
  for (const char c : test) {
    if (std::isalnum(static_cast<unsigned char>(c)) != 0) {
      clean += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    } else {
      clean += '_';
    }
  }
  if (clean.size() > 32) clean.resize(32);
  return std::string(prefix) + "_" + clean + "_" + std::to_string(::getpid()) + "_" +
         std::to_string(++*counter);
}

void skip_or_fail(std::string_view what, std::string_view why, bool hard_failure,
                  const char* required) {
  if (hard_failure || env(required) == "1") {
    FAIL() << what << " is not available: " << why;
  }
  GTEST_SKIP() << what << " is not available: " << why;
}

}  // namespace reservoir::testing::fixture
