// tests/support/fixture_util.hpp: what the server fixtures (postgres_fixture.cpp,
// mariadb_fixture.cpp) share: the environment, the fixture scripts' state files and exit
// statuses, whether a server answers, unique names, and skipping or failing a test whose server
// is missing.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <string_view>

namespace reservoir::testing::fixture {

// The exit status of pg_fixture.sh / mariadb_fixture.sh when there are no server binaries.
constexpr int kNoBinariesExit = 77;

// The environment variable `name`, or "" when it is not set.
std::string env(const char* name);

// The KEY=VALUE lines of a fixture script's state file.
std::map<std::string, std::string> read_state(const std::filesystem::path& file);

// Whether the server behind dsn accepts our credentials now, through the registered driver
// `driver` (a state file may outlive its server when a run was killed before its cleanup).
bool answers(std::string_view driver, const std::string& dsn);

// Runs the fixture script with args; returns its exit status and puts its output in *output.
int run_script(std::string_view script, const std::string& args, std::string* output);

// A lower-case SQL identifier unique to the current test and process, numbered by ++*counter.
std::string unique_name(std::string_view prefix, int* counter);

// In a test's SetUp when its server is missing: fails the test when hard_failure or the
// environment variable `required` is "1", else skips it; "<what> is not available: <why>".
void skip_or_fail(std::string_view what, std::string_view why, bool hard_failure,
                  const char* required);

}  // namespace reservoir::testing::fixture
