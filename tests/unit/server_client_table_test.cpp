// tests/unit/server_client_table_test.cpp: the daemon's table of clients by cancel key
// (PointerTable), against std::map under random inserts and erases, with colliding homes.
#include <gtest/gtest.h>

#include <cstdint>
#include <map>
#include <memory>
#include <random>
#include <vector>

#include "server/client_table.hpp"

namespace reservoir::server {
namespace {

struct Item {
  std::uint64_t key;
};
std::uint64_t item_key(const Item& i) { return i.key; }
using Table = PointerTable<Item, &item_key>;

TEST(ServerClientTableTest, EmptyFindsAndErasesNothing) {
  Table t;
  EXPECT_EQ(t.size(), 0u);
  EXPECT_EQ(t.find(1), nullptr);
  EXPECT_FALSE(t.erase(1));
  int n = 0;
  t.for_each([&](Item&) { ++n; });
  EXPECT_EQ(n, 0);
}

TEST(ServerClientTableTest, RefusesADuplicateKey) {
  Table t;
  Item a{42}, b{42};
  EXPECT_TRUE(t.insert(&a));
  EXPECT_FALSE(t.insert(&b));
  EXPECT_EQ(t.find(42), &a);
  EXPECT_EQ(t.size(), 1u);
  EXPECT_TRUE(t.erase(42));
  EXPECT_EQ(t.find(42), nullptr);
  EXPECT_TRUE(t.insert(&b));
  EXPECT_EQ(t.find(42), &b);
}

// Keys from a small range collide on their home slots and wrap around the table's end, which
// is where backward-shift deletion can go wrong.
void random_against_map(std::uint64_t key_range, unsigned seed) {
  std::mt19937_64 rng(seed);
  std::vector<std::unique_ptr<Item>> items;
  std::map<std::uint64_t, Item*> ref;
  Table t;
  for (int step = 0; step < 20000; ++step) {
    const std::uint64_t key = rng() % key_range;
    const int op = static_cast<int>(rng() % 3);
    if (op < 2 && step < 15000) {  // more inserts than erases, then drain (the table shrinks)
      items.push_back(std::make_unique<Item>(Item{key}));
      const bool fresh = ref.emplace(key, items.back().get()).second;
      ASSERT_EQ(t.insert(items.back().get()), fresh) << step;
    } else {
      ASSERT_EQ(t.erase(key), ref.erase(key) == 1) << step;
    }
    ASSERT_EQ(t.size(), ref.size());
    const std::uint64_t probe = rng() % key_range;
    const auto it = ref.find(probe);
    ASSERT_EQ(t.find(probe), it == ref.end() ? nullptr : it->second) << step;
    ASSERT_LE(t.size() * 4, t.capacity() * 3);
  }
  std::map<std::uint64_t, Item*> seen;
  t.for_each([&](Item& i) { EXPECT_TRUE(seen.emplace(i.key, &i).second); });
  EXPECT_EQ(seen, ref);
  for (const auto& [k, p] : ref) EXPECT_EQ(t.find(k), p);
}

TEST(ServerClientTableTest, MatchesAMapDense) { random_against_map(300, 1); }
TEST(ServerClientTableTest, MatchesAMapSparse) { random_against_map(1u << 30, 2); }

TEST(ServerClientTableTest, GrowsAndShrinks) {
  std::vector<Item> items(10000);
  Table t;
  for (std::size_t i = 0; i < items.size(); ++i) {
    items[i].key = (std::uint64_t{i} << 32) | (i * 2654435761u);
    ASSERT_TRUE(t.insert(&items[i]));
  }
  EXPECT_EQ(t.size(), 10000u);
  EXPECT_LE(t.capacity(), 16384u);  // 8 bytes a slot: under 14 bytes per element here
  for (auto& item : items) ASSERT_EQ(t.find(item.key), &item);
  for (std::size_t i = 0; i + 1 < items.size(); ++i) ASSERT_TRUE(t.erase(items[i].key));
  EXPECT_EQ(t.size(), 1u);
  EXPECT_EQ(t.capacity(), 16u);
  EXPECT_EQ(t.find(items.back().key), &items.back());
}

}  // namespace
}  // namespace reservoir::server
