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

bool has_driver(const ServerKind& kind, std::string* why) {
  if (find_driver(std::string(kind.driver))) return true;
  *why = "reservoir was built without the " + std::string(kind.what) + " driver (" +
         std::string(kind.driver_package) + " not found)";
  return false;
}

std::map<std::string, std::string> start_server(const ServerKind& kind,
                                                const std::string& state_path, std::string* why,
                                                bool* no_binaries) {
  *no_binaries = false;
  std::string output;
  const int rc = run_script(kind.script,
                            "start '" + state_path + "' " + std::to_string(::getpid()), &output);
  const std::string script_name = std::filesystem::path(kind.script).filename().string();
  if (rc != 0) {
    *no_binaries = rc == kNoBinariesExit;
    *why = *no_binaries ? "no " + std::string(kind.what) + " server binaries (apt-get install " +
                              std::string(kind.server_package) + ")"
                        : script_name + " start failed (exit " + std::to_string(rc) + "): " + output;
    return {};
  }
  auto state = read_state(state_path);
  if (state.find(kind.dsn_key) == state.end() || state[kind.dsn_key].empty()) {
    stop_server(kind, state_path);
    *why = script_name + " wrote no DSN to " + state_path;
    return {};
  }
  return state;
}

void stop_server(const ServerKind& kind, const std::string& state_path) {
  run_script(kind.script, "stop '" + state_path + "'", nullptr);
}

Located locate_server(const ServerKind& kind) {
  Located out;
  if (!has_driver(kind, &out.why)) return out;
  if (std::string dsn = env(kind.dsn_key); !dsn.empty()) {
    out.env_dsn = std::move(dsn);
    return out;
  }
  std::string state_file = env(kind.state_file_env);
  if (state_file.empty()) state_file = std::string(kind.state_file);
  if (!state_file.empty() && std::filesystem::exists(state_file)) {
    // A state file may outlive its server when a run was killed before its cleanup.
    auto state = read_state(state_file);
    if (const auto it = state.find(kind.dsn_key);
        it != state.end() && answers(kind.driver, it->second)) {
      out.state = std::move(state);
      return out;
    }
  }
  // Our own server (the watchdog deletes its state file too if this process dies).
  const std::string state_path =
      (std::filesystem::temp_directory_path() /
       (std::string(kind.temp_prefix) + "-" + std::to_string(::getpid()) + ".env"))
          .string();
  bool no_binaries = false;
  out.state = start_server(kind, state_path, &out.why, &no_binaries);
  if (out.state.empty()) {
    out.hard_failure = !no_binaries;
    return out;
  }
  out.own_state = state_path;
  return out;
}

std::string url_dsn(std::string_view scheme, std::string_view host, std::uint16_t port,
                    std::string_view user, std::string_view password, std::string_view database,
                    std::string_view params) {
  std::string out = std::string(scheme) + "://" + std::string(user);
  if (!password.empty()) out += ":" + std::string(password);
  out += "@" + std::string(host);
  if (port != 0) out += ":" + std::to_string(port);
  out += "/" + std::string(database);
  if (!params.empty()) out += "?" + std::string(params);
  return out;
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
