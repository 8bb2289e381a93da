// tests/unit/driver_registry_test.cpp: register_driver / find_driver / registered_schemes,
// including registration from a static initialiser and concurrent use.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "reservoir/driver.hpp"
#include "reservoir/error.hpp"

namespace reservoir {
namespace {

class StubDriver : public Driver {
 public:
  explicit StubDriver(std::string scheme) : scheme_(std::move(scheme)) {}
  std::string_view scheme() const noexcept override { return scheme_; }
  std::unique_ptr<Connection> connect(const Dsn&, std::chrono::milliseconds) override {
    throw Error(ErrorCode::unsupported, "stub driver does not connect");
  }

 private:
  std::string scheme_;
};

// As the built-in drivers do: registered before main() from a static initialiser.
const bool kStaticRegistered = [] {
  register_driver(std::make_shared<StubDriver>("regtest-static"));
  return true;
}();

TEST(DriverRegistryTest, StaticRegistrationIsVisible) {
  ASSERT_TRUE(kStaticRegistered);
  auto d = find_driver("regtest-static");
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(d->scheme(), "regtest-static");
}

TEST(DriverRegistryTest, FindUnknownIsNull) {
  EXPECT_EQ(find_driver("regtest-nope"), nullptr);
  EXPECT_EQ(find_driver(""), nullptr);
}

TEST(DriverRegistryTest, RegisterFindAndReplace) {
  auto first = std::make_shared<StubDriver>("regtest-a");
  register_driver(first);
  EXPECT_EQ(find_driver("regtest-a"), first);
  EXPECT_EQ(find_driver("RegTest-A"), first);  // schemes are case-insensitive

  auto second = std::make_shared<StubDriver>("REGTEST-A");
  register_driver(second);  // replaces, whatever the case it is given in
  EXPECT_EQ(find_driver("regtest-a"), second);
  const auto schemes = registered_schemes();
  EXPECT_EQ(std::count(schemes.begin(), schemes.end(), "regtest-a"), 1);
}

TEST(DriverRegistryTest, SchemesAreSortedAndLowerCase) {
  register_driver(std::make_shared<StubDriver>("regtest-z"));
  register_driver(std::make_shared<StubDriver>("regtest-b"));
  const auto schemes = registered_schemes();
  EXPECT_TRUE(std::is_sorted(schemes.begin(), schemes.end()));
  EXPECT_NE(std::find(schemes.begin(), schemes.end(), "regtest-z"), schemes.end());
  EXPECT_NE(std::find(schemes.begin(), schemes.end(), "regtest-b"), schemes.end());
  EXPECT_NE(std::find(schemes.begin(), schemes.end(), "regtest-static"), schemes.end());
  for (const auto& s : schemes) {
    EXPECT_TRUE(std::none_of(s.begin(), s.end(), [](char c) { return c >= 'A' && c <= 'Z'; })) << s;
  }
}

TEST(DriverRegistryTest, RejectsNullAndEmptyScheme) {
  try {
    register_driver(nullptr);
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
  }
  try {
    register_driver(std::make_shared<StubDriver>(""));
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::invalid_argument);
  }
  EXPECT_EQ(find_driver(""), nullptr);
}

TEST(DriverRegistryTest, ConcurrentUse) {
  constexpr int kThreads = 8;
  constexpr int kRounds = 500;
  std::atomic<int> misses{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([t, &misses] {
      const std::string scheme = "regtest-thread" + std::to_string(t);
      for (int i = 0; i < kRounds; ++i) {
        register_driver(std::make_shared<StubDriver>(scheme));
        if (find_driver(scheme) == nullptr) ++misses;
        (void)registered_schemes();
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(misses.load(), 0);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_NE(find_driver("regtest-thread" + std::to_string(t)), nullptr);
  }
}

}  // namespace
}  // namespace reservoir
