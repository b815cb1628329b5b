// A request body read whole into memory, up to a cap: the small JSON bodies of the admin
// API and of inbound webhooks.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <cstddef>
#include <string>

#include "http/exchange.h"

namespace ocirelay::http {

struct CappedBody {
  std::string bytes;
  bool too_large = false;  // more than the cap was sent: the rest is not read
  bool broken = false;     // the client went away or framed the body wrongly
  // The body was not read to its end: the connection must close after the response.
  bool unread() const { return too_large || broken; }
};

// Reads ex's body (none: empty). A Content-Length above `max` is refused before reading.
boost::asio::awaitable<CappedBody> read_capped_body(Exchange& ex, std::size_t max);

}  // namespace ocirelay::http
