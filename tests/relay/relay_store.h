// For the relay's unit tests: a store in a temporary directory opened with the relay's
// databases (ledger, queue, executions), as serve and sync open it.
#pragma once

#include <gtest/gtest.h>

#include <memory>

#include "relay/ledger.h"
#include "store/store.h"
#include "tests/support/files.h"

namespace ocirelay::relay::testing {

// Null (and a test failure) when the store does not open.
inline std::unique_ptr<store::Store> open_relay_store(const ocirelay::testing::TempDir& dir) {
  store::StoreOptions o;
  o.root = dir.path();
  o.extra_databases = ledger_databases();
  auto s = store::Store::open(o);
  EXPECT_TRUE(s.ok()) << s.error().to_string();
  return s.ok() ? std::move(*s) : nullptr;
}

}  // namespace ocirelay::relay::testing
