#include "http/read_body.h"

#include <vector>

namespace ocirelay::http {

// GCC 12 pairs asio's coroutine-frame operator delete with the aligned_alloc inside its
// operator new and warns; asio frees that memory with free(), which matches.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
boost::asio::awaitable<CappedBody> read_capped_body(Exchange& ex, std::size_t max) {
  CappedBody out;
  if (!ex.has_body()) co_return out;
  if (auto announced = ex.body_length(); announced && *announced > max) {
    out.too_large = true;
    co_return out;
  }
  std::vector<char> buf(8192);  // on the heap: a large coroutine frame trips GCC 12's new/delete check
  for (;;) {
    auto got = co_await ex.read_body(buf.data(), buf.size());
    if (!got.ok) {
      out.broken = true;
      break;
    }
    if (got.n == 0) break;
    if (out.bytes.size() + got.n > max) {
      out.too_large = true;
      break;
    }
    out.bytes.append(buf.data(), got.n);
  }
  co_return out;
}
#pragma GCC diagnostic pop

}  // namespace ocirelay::http
