// Running blocking work (LMDB, disk, the network) from a request coroutine, off the I/O
// threads: proxy/ and api/ handlers.
#pragma once

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <optional>

#include "oci/result.h"

namespace ocirelay::http {

// Runs f() (returning a Result<...> or Status) on `pool` and resumes the calling coroutine
// on its own executor. A throw becomes an internal error (guarded()), never crossing the
// thread boundary.
template <class T, class F>
boost::asio::awaitable<T> on_pool(boost::asio::thread_pool& pool, F f) {
  // std::optional because co_spawn needs a default-constructible result; Result has none.
  auto out = co_await boost::asio::co_spawn(
      pool,
      [fn = std::move(f)]() mutable -> boost::asio::awaitable<std::optional<T>> {
        co_return guarded("request on a worker pool", [&]() -> T { return fn(); });
      },
      boost::asio::use_awaitable);
  co_return std::move(*out);
}

}  // namespace ocirelay::http
