// LMDB wrappers: named DBs, prefix scans, and map growth on MDB_MAP_FULL.
#include "store/lmdb.h"

#include <gtest/gtest.h>

#include <cstring>

#include "store_test_support.h"

namespace ocirelay::store::lmdb {
namespace {

TEST(LmdbTest, WriteGrowsTheMapWhenFullAndKeepsData) {
  store::testing::TempDir dir;
  auto env = Env::open(dir.path(), {"a", "b"}, 64 * 1024);
  ASSERT_TRUE(env.ok()) << env.error().to_string();
  std::size_t before = (*env)->map_size();
  std::string value(2000, 'v');
  for (int batch = 0; batch < 20; ++batch) {
    auto st = (*env)->write([&](WriteTxn& t) -> Status {
      for (int i = 0; i < 50; ++i)
        if (auto s = t.put((*env)->dbi("a"), "k" + std::to_string(batch * 50 + i), value); !s.ok())
          return s;
      return {};
    });
    ASSERT_TRUE(st.ok()) << st.error().to_string();
  }
  EXPECT_GT((*env)->map_size(), before);
  auto r = (*env)->read();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*(*r)->count((*env)->dbi("a")), 1000u);
  EXPECT_EQ(*(*r)->count((*env)->dbi("b")), 0u);
  auto v = (*r)->get((*env)->dbi("a"), "k999");
  ASSERT_TRUE(v.ok() && v->has_value());
  EXPECT_EQ(**v, value);
}

TEST(LmdbTest, ScanVisitsOnlyThePrefixInOrder) {
  store::testing::TempDir dir;
  auto env = Env::open(dir.path(), {"t"}, 1 << 20);
  ASSERT_TRUE(env.ok());
  Dbi t = (*env)->dbi("t");
  ASSERT_TRUE((*env)->write([&](WriteTxn& w) -> Status {
    for (const char* k : {"repo\0b", "repo\0a", "repo2\0a", "rep\0z"})
      if (auto s = w.put(t, std::string_view(k, std::strlen(k) + 2), "x"); !s.ok()) return s;
    return {};
  }).ok());
  auto r = (*env)->read();
  std::vector<std::string> seen;
  ASSERT_TRUE((*r)->scan(t, std::string_view("repo\0", 5), [&](std::string_view k, std::string_view) {
    seen.emplace_back(k);
    return true;
  }).ok());
  EXPECT_EQ(seen, (std::vector<std::string>{std::string("repo\0a", 6), std::string("repo\0b", 6)}));
}

TEST(LmdbTest, FailedWriteCommitsNothing) {
  store::testing::TempDir dir;
  auto env = Env::open(dir.path(), {"t"}, 1 << 20);
  ASSERT_TRUE(env.ok());
  Dbi t = (*env)->dbi("t");
  auto st = (*env)->write([&](WriteTxn& w) -> Status {
    if (auto s = w.put(t, "k", "v"); !s.ok()) return s;
    return Error{Errc::invalid_argument, "changed my mind"};
  });
  EXPECT_EQ(st.error().code, Errc::invalid_argument);
  auto r = (*env)->read();
  EXPECT_FALSE((*(*r)->get(t, "k")).has_value());
}

// An exception unwinding through the callback (a bug) aborts the transaction: nothing is
// committed and the writer lock is free for the next write.
TEST(LmdbTest, ThrowingWriteAbortsAndReleasesTheWriter) {
  store::testing::TempDir dir;
  auto env = Env::open(dir.path(), {"t"}, 1 << 20);
  ASSERT_TRUE(env.ok());
  Dbi t = (*env)->dbi("t");
  EXPECT_THROW((void)(*env)->write([&](WriteTxn& w) -> Status {
                 if (auto s = w.put(t, "k", "v"); !s.ok()) return s;
                 throw std::runtime_error("bug");
               }),
               std::runtime_error);
  {
    auto r = (*env)->read();
    ASSERT_TRUE(r.ok());
    EXPECT_FALSE((*(*r)->get(t, "k")).has_value());
  }
  EXPECT_TRUE((*env)->write([&](WriteTxn& w) { return w.put(t, "k2", "v"); }).ok());
}

}  // namespace
}  // namespace ocirelay::store::lmdb
