#include "api/control_plane.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/thread_pool.hpp>
#include <charconv>
#include <optional>
#include <utility>

#include "api/resources.h"
#include "fetch/registries.h"
#include "http/auth.h"
#include "http/on_pool.h"
#include "http/query.h"
#include "http/read_body.h"
#include "http/secrets.h"
#include "oci/errors.h"
#include "oci/json.h"
#include "relay/executions.h"
#include "relay/health.h"
#include "relay/rule.h"
#include "relay/service.h"

namespace ocirelay::api {
namespace {

using boost::asio::awaitable;

constexpr std::size_t kMaxBody = 64 << 10;  // the API's bodies are a line of JSON
constexpr std::size_t kDefaultPageSize = 10, kMaxPageSize = 100;

// What a route answers.
struct Reply {
  Reply(unsigned s = 200, std::string b = {}, std::string type = "application/json")
      : status(s), body(std::move(b)), content_type(std::move(type)) {}
  unsigned status;
  std::string body;
  std::string content_type;
  std::vector<std::pair<std::string_view, std::string>> headers;  // names: literals
};

Reply error(unsigned status, std::string_view code, std::string_view message) {
  return Reply{status, oci::error_body(code, message)};
}

Reply from_error(const Error& e) {
  switch (e.code) {
    case Errc::not_found: return error(404, "NOT_FOUND", e.message);
    case Errc::invalid_argument: return error(400, "BAD_REQUEST", e.message);
    default: return error(500, "INTERNAL_SERVER_ERROR", e.message);
  }
}

std::optional<std::uint64_t> number(std::string_view s) {
  std::uint64_t n = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc() || p != s.data() + s.size() || s.empty()) return std::nullopt;
  return n;
}

std::vector<std::string_view> segments(std::string_view path) {
  std::vector<std::string_view> out;
  while (!path.empty()) {
    if (path.front() == '/') {
      path.remove_prefix(1);
      continue;
    }
    auto slash = path.find('/');
    out.push_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash);
  }
  return out;
}

// A JSON object body's string field; nullopt when the body is not such an object.
std::optional<std::string> string_member(const std::string& body, const char* key) {
  auto j = oci::json::parse(body);
  if (!j.is_object()) return std::nullopt;
  return oci::json::string_field(j, key);
}

}  // namespace

struct ControlPlane::Impl {
  explicit Impl(Deps d)
      : relay(d.relay), health(d.health), relay_config(d.relay_config), registries(std::move(d.registries)),
        tokens(std::move(d.tokens)) {}

  relay::RelayService& relay;
  relay::RegistryHealth& health;
  const relay::RelayConfig& relay_config;
  const std::vector<fetch::UpstreamConfig> registries;
  const std::vector<ApiToken> tokens;
  http::Authenticator* users = nullptr;  // set_authenticator
  boost::asio::thread_pool pool{2};

  // The token presented as `Authorization: Bearer <token>`, compared in constant time.
  const ApiToken* authorized(const http::Exchange& ex) const {
    const std::string auth = ex.header("Authorization");
    const auto presented = http::bearer_token(auth);
    if (!presented) return nullptr;
    for (const auto& t : tokens)
      if (http::same_secret(t.token, *presented)) return &t;
    return nullptr;
  }

  // The routes; blocking (LMDB): run on the pool.
  Reply route(http::Method method, std::string_view target, const std::string& body) {
    const auto q = target.find('?');
    const std::string_view path = target.substr(0, q);
    const std::string_view query = q == std::string_view::npos ? std::string_view{} : target.substr(q + 1);
    const auto parts = segments(path.substr(kPrefix.size()));
    if (parts.empty()) return error(404, "NOT_FOUND", "no such API route");
    if (parts[0] == "registries") return route_registries(method, parts, body);
    if (parts[0] == "policies") return route_policies(method, parts);
    if (parts[0] == "adapters" && parts.size() == 1) {
      if (method != http::Method::get) return error(405, "METHOD_NOT_ALLOWED", "GET");
      return Reply{200, oci::json::dump(adapters_json())};
    }
    if (parts[0] != "executions") return error(404, "NOT_FOUND", "no such API route");
    if (parts.size() == 1) {
      if (method == http::Method::get) return list(query);
      if (method == http::Method::post) return start(body);
      return error(405, "METHOD_NOT_ALLOWED", "GET or POST");
    }
    auto id = number(parts[1]);
    if (!id) return error(404, "NOT_FOUND", "no execution '" + std::string(parts[1]) + "'");
    if (parts.size() == 2) {
      if (method == http::Method::get) return execution(*id);
      if (method == http::Method::put) return stop(*id, body);
      return error(405, "METHOD_NOT_ALLOWED", "GET or PUT");
    }
    if (parts[2] != "tasks" || method != http::Method::get) return error(404, "NOT_FOUND", "no such API route");
    if (parts.size() == 3) return tasks(*id);
    auto task = number(parts[3]);
    if (parts.size() == 5 && parts[4] == "log" && task) return log(*id, *task);
    return error(404, "NOT_FOUND", "no such API route");
  }

  // Registries and policies are the config file's: what would change one is refused.
  static Reply read_only(std::string_view what) {
    return error(405, "METHOD_NOT_ALLOWED",
                 std::string(what) + " come from the config file (\"source\": \"config\") and are read-only here: "
                                     "edit the config and restart");
  }

  const fetch::UpstreamConfig* find_registry(std::string_view name) const {
    for (const auto& r : registries)
      if (r.name == name) return &r;
    return nullptr;
  }

  oci::json::Json registry(const fetch::UpstreamConfig& r) const {
    const relay::RelayRegistry* entry = nullptr;
    for (const auto& rr : relay_config.registries)
      if (rr.name == r.name) entry = &rr;
    return registry_json(r, entry, health.get(r.name));
  }

  Reply route_registries(http::Method method, const std::vector<std::string_view>& parts, const std::string& body) {
    if (parts.size() == 2 && parts[1] == "ping") {
      if (method != http::Method::post) return error(405, "METHOD_NOT_ALLOWED", "POST");
      auto id = string_member(body, "id");
      if (!id || id->empty())
        return error(400, "BAD_REQUEST", "expected {\"id\": \"<registry name>\"} (a configured registry)");
      if (!find_registry(*id)) return error(404, "NOT_FOUND", "no registry named '" + *id + "'");
      auto pinged = health.ping(*id);
      if (!pinged) return from_error(pinged.error());
      return Reply{200, oci::json::dump(health_json(*pinged))};
    }
    if (parts.size() > 2) return error(404, "NOT_FOUND", "no such API route");
    if (method != http::Method::get) return read_only("registries");
    if (parts.size() == 1) {
      oci::json::Json all = oci::json::Json::array();
      for (const auto& r : registries) all.push_back(registry(r));
      Reply reply{200, oci::json::dump(all)};
      reply.headers.emplace_back("X-Total-Count", std::to_string(registries.size()));
      return reply;
    }
    const auto* r = find_registry(parts[1]);
    if (!r) return error(404, "NOT_FOUND", "no registry named '" + std::string(parts[1]) + "'");
    return Reply{200, oci::json::dump(registry(*r))};
  }

  Reply route_policies(http::Method method, const std::vector<std::string_view>& parts) {
    if (parts.size() > 2) return error(404, "NOT_FOUND", "no such API route");
    if (method != http::Method::get) return read_only("policies");
    if (parts.size() == 1) {
      oci::json::Json all = oci::json::Json::array();
      for (const auto& rule : relay_config.rules) all.push_back(policy_json(rule));
      Reply reply{200, oci::json::dump(all)};
      reply.headers.emplace_back("X-Total-Count", std::to_string(relay_config.rules.size()));
      return reply;
    }
    for (const auto& rule : relay_config.rules)
      if (rule.name == parts[1]) return Reply{200, oci::json::dump(policy_json(rule))};
    return error(404, "NOT_FOUND", "no policy named '" + std::string(parts[1]) + "'");
  }

  Reply list(std::string_view query) {
    relay::ExecutionFilter f;
    f.limit = relay::kExecutionsKept;
    std::string link_query;  // the filters, kept in the Link header's pages
    auto keep = [&](const char* key, const std::string& v) { link_query += std::string(key) + "=" + http::query_escape(v) + "&"; };
    if (auto p = http::query_param(query, "policy_id")) {
      f.rule = *p;
      keep("policy_id", *p);
    }
    if (auto s = http::query_param(query, "status")) {
      f.status = relay::parse_execution_status(*s);
      if (!f.status) return error(400, "BAD_REQUEST", "status: one of running, stopping, succeeded, failed, stopped");
      keep("status", *s);
    }
    auto trigger = http::query_param(query, "trigger");
    if (trigger) keep("trigger", *trigger);
    std::uint64_t page = 1, size = kDefaultPageSize;
    if (auto p = http::query_param(query, "page")) {
      auto n = number(*p);
      if (!n || *n == 0) return error(400, "BAD_REQUEST", "page: a whole number from 1");
      page = *n;
    }
    if (auto p = http::query_param(query, "page_size")) {
      auto n = number(*p);
      if (!n || *n == 0 || *n > kMaxPageSize) return error(400, "BAD_REQUEST", "page_size: a whole number from 1 to 100");
      size = *n;
    }
    auto all = relay.executions().list(f);
    if (!all) return from_error(all.error());
    if (trigger)
      std::erase_if(*all, [&](const relay::Execution& e) { return e.trigger != *trigger; });
    const std::uint64_t total = all->size();
    const std::uint64_t first = std::min(total, (page - 1) * size);
    std::vector<relay::Execution> shown(all->begin() + static_cast<std::ptrdiff_t>(first),
                                        all->begin() + static_cast<std::ptrdiff_t>(std::min(total, first + size)));
    Reply r{200, relay::to_json(shown)};
    r.headers.emplace_back("X-Total-Count", std::to_string(total));
    std::string links;
    auto link = [&](std::uint64_t p, const char* rel) {
      if (!links.empty()) links += ", ";
      links += "<" + std::string(kPrefix) + "/executions?" + link_query + "page=" + std::to_string(p) +
               "&page_size=" + std::to_string(size) + ">; rel=\"" + rel + "\"";
    };
    if (page > 1 && first > 0) link(page - 1, "prev");
    if (first + size < total) link(page + 1, "next");
    if (!links.empty()) r.headers.emplace_back("Link", std::move(links));
    return r;
  }

  Result<relay::Execution> find(std::uint64_t id) {
    auto e = relay.executions().get(id);
    if (!e) return e.error();
    if (!*e)
      return Error{Errc::not_found, "no execution " + std::to_string(id) + " (the newest " +
                                        std::to_string(relay::kExecutionsKept) + " are kept)"};
    return std::move(**e);
  }

  Reply execution(std::uint64_t id) {
    auto e = find(id);
    if (!e) return from_error(e.error());
    return Reply{200, relay::to_json(*e)};
  }

  Reply tasks(std::uint64_t id) {
    auto e = find(id);
    if (!e) return from_error(e.error());
    auto t = relay.executions().tasks(id);
    if (!t) return from_error(t.error());
    return Reply{200, relay::to_json(*t, /*logs=*/false)};
  }

  Reply log(std::uint64_t id, std::uint64_t task) {
    auto e = find(id);
    if (!e) return from_error(e.error());
    auto t = relay.executions().tasks(id);
    if (!t) return from_error(t.error());
    if (task == 0 || task > t->size())
      return error(404, "NOT_FOUND", "execution " + std::to_string(id) + " has no task " + std::to_string(task));
    std::string text;
    for (const auto& line : (*t)[task - 1].log) text += line + "\n";
    return Reply{200, std::move(text), "text/plain; charset=utf-8"};
  }

  Reply start(const std::string& body) {
    auto policy = string_member(body, "policy_id");
    if (!policy || policy->empty()) return error(400, "BAD_REQUEST", "expected {\"policy_id\": \"<rule name>\"}");
    auto id = relay.run_now(*policy);
    if (!id) return from_error(id.error());
    Reply r{202, oci::json::dump(oci::json::Json{{"id", *id}})};
    r.headers.emplace_back("Location", std::string(kPrefix) + "/executions/" + std::to_string(*id));
    return r;
  }

  Reply stop(std::uint64_t id, const std::string& body) {
    auto status = string_member(body, "status");
    if (!status || *status != "stopped") return error(400, "BAD_REQUEST", "expected {\"status\": \"stopped\"}");
    if (auto st = relay.stop_execution(id); !st) return from_error(st.error());
    auto e = find(id);
    if (!e) return from_error(e.error());
    return Reply{200, relay::to_json(*e)};
  }
};

ControlPlane::ControlPlane(Deps deps) : impl_(std::make_unique<Impl>(std::move(deps))) {}

ControlPlane::~ControlPlane() { impl_->pool.join(); }

// GCC 12 pairs asio's coroutine-frame operator delete with the aligned_alloc inside its
// operator new and warns; asio frees that memory with free(), which matches. A false
// positive on this function's frame alone.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void ControlPlane::set_authenticator(http::Authenticator* auth) { impl_->users = auth; }

awaitable<http::Outcome> ControlPlane::serve(http::Exchange& ex) {
  Reply reply;
  bool close = false;
  std::string who;  // the token's name or the user's, for the log
  if (const ApiToken* token = impl_->authorized(ex)) who = "token " + token->name;
  std::optional<Reply> refused;
  if (who.empty() && impl_->users && !ex.header("Authorization").empty()) {
    auto user = co_await impl_->users->authenticate(ex);
    if (!user) {
      refused = error(user.error().code == Errc::too_many_requests ? 429 : 401,
                      user.error().code == Errc::too_many_requests ? "TOOMANYREQUESTS" : "UNAUTHORIZED",
                      user.error().message);
    } else if (user->user.empty()) {
      // anonymous: the 401 below
    } else if (!impl_->users->may_administer(*user)) {
      refused = error(403, "DENIED", "user '" + user->user + "' may not use the admin API (give them the admin action in access:)");
      spdlog::warn("api: {} {} by user {}: refused, no admin action", ex.method_name(), std::string(ex.target()),
                   user->user);
    } else {
      who = "user " + user->user;
    }
  }
  if (who.empty() && !refused) {
    const bool any = !impl_->tokens.empty() || impl_->users;
    refused = error(401, "UNAUTHORIZED",
                    !any ? "the API is off: no api_tokens are configured and no auth: users"
                         : "a valid API token (Authorization: Bearer <token>) or the credentials of a user with the "
                           "admin action are required");
    refused->headers.emplace_back("WWW-Authenticate", "Bearer realm=\"ocirelay-api\"");
    if (impl_->users) refused->headers.emplace_back("WWW-Authenticate", "Basic realm=\"ocirelay-api\"");
  }
  if (refused) {
    reply = std::move(*refused);
    close = ex.has_body();  // its body is not read
  } else {
    auto read = co_await http::read_capped_body(ex, kMaxBody);
    close = read.unread();
    const bool too_large = read.too_large;
    std::string body = std::move(read.bytes);
    if (too_large) {
      reply = error(413, "TOO_LARGE", "request bodies here are at most 64 KiB");
    } else {
      const http::Method method = ex.method();
      const std::string target(ex.target());
      auto routed = co_await http::on_pool<Result<Reply>>(
          impl_->pool, [this, method, &target, &body]() -> Result<Reply> { return impl_->route(method, target, body); });
      reply = routed ? std::move(*routed) : from_error(routed.error());
    }
    spdlog::info("api: {} {} by {}: {}", ex.method_name(), std::string(ex.target()), who, reply.status);
  }
  http::Response res(reply.status);
  res.set("Content-Type", reply.content_type);
  for (auto& [name, value] : reply.headers) res.set(name, std::move(value));
  if (close) res.close();
  auto out = co_await ex.send(std::move(res), reply.body);
  out.route = "api";
  co_return out;
}
#pragma GCC diagnostic pop

}  // namespace ocirelay::api
