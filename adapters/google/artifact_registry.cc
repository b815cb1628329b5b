// Artifact Registry repositories for a push: parse "L-docker.pkg.dev/P/R/...", create the
// repository (a long-running operation, polled to its end) and treat "already exists" as
// done, so the prepare step can run before every replication.
#include <nlohmann/json.hpp>
#include <thread>
#include <vector>

#include "adapters/encoding.h"
#include "adapters/google/google.h"
#include "adapters/google/google_api.h"
#include "oci/json.h"

namespace ocirelay::adapters {
namespace {

using json = nlohmann::json;

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  while (true) {
    auto at = s.find(sep);
    out.push_back(s.substr(0, at));
    if (at == std::string_view::npos) return out;
    s.remove_prefix(at + 1);
  }
}

// google.rpc.Code of a finished operation's error.
Errc rpc_code_errc(int code) {
  switch (code) {
    case 3:
    case 9:
    case 11:
      return Errc::invalid_argument;  // INVALID_ARGUMENT, FAILED_PRECONDITION, OUT_OF_RANGE
    case 5:
      return Errc::not_found;
    case 7:
      return Errc::denied;
    case 8:
      return Errc::too_many_requests;  // RESOURCE_EXHAUSTED
    case 16:
      return Errc::unauthorized;
    case 4:
    case 10:
    case 13:
    case 14:
      return Errc::upstream_unavailable;
    default:
      return Errc::upstream_protocol;
  }
}

// A finished operation: success, or the error it ended with (6 ALREADY_EXISTS: success).
Status operation_outcome(std::string_view step, const json& op) {
  if (!op.contains("error")) return {};
  const auto& e = op["error"];
  const int code = e.contains("code") && e["code"].is_number_integer() ? e["code"].get<int>() : 2;
  if (code == 6) return {};
  std::string msg =
      "google: " + std::string(step) + ": operation failed (code " + std::to_string(code);
  if (e.contains("message") && e["message"].is_string())
    msg += ": " + e["message"].get<std::string>().substr(0, 200);
  return Error{rpc_code_errc(code), msg + ")"};
}

}  // namespace

bool is_gcr_host(std::string_view host) {
  return host == "gcr.io" || (host.size() > 7 && host.ends_with(".gcr.io"));
}

Result<ArtifactRegistryRepository> parse_artifact_registry_destination(
    std::string_view destination) {
  auto bad = [&](std::string_view why) {
    return Error{Errc::invalid_argument,
                 "artifact registry: \"" + std::string(destination) + "\" " + std::string(why)};
  };
  auto parts = split(destination, '/');
  constexpr std::string_view kSuffix = "-docker.pkg.dev";
  const std::string_view host = parts[0];
  if (!host.ends_with(kSuffix) || host.size() == kSuffix.size())
    return bad("is not on an Artifact Registry Docker host (<location>-docker.pkg.dev)");
  ArtifactRegistryRepository r;
  r.location = std::string(host.substr(0, host.size() - kSuffix.size()));
  std::size_t next = 1;
  // A domain-scoped project "example.com:proj" is written "example.com/proj" in the path;
  // a plain project ID never holds a dot.
  if (parts.size() > 2 && parts[1].find('.') != std::string_view::npos) {
    r.project = std::string(parts[1]) + ":" + std::string(parts[2]);
    next = 3;
  } else if (parts.size() > 1) {
    r.project = std::string(parts[1]);
    next = 2;
  }
  if (parts.size() <= next || r.project.empty() || parts[next].empty())
    return bad(
        "names no project and repository (<location>-docker.pkg.dev/<project>/<repository>)");
  r.repository = std::string(parts[next]);
  return r;
}

Status artifact_registry_create_repository(std::string_view destination, CredentialSource& google,
                                           const ArtifactRegistryCreateOptions& options) {
  const std::string_view host = destination.substr(0, destination.find('/'));
  if (is_gcr_host(host)) return {};  // GCR creates its storage on the first push
  auto repo = parse_artifact_registry_destination(destination);
  if (!repo) return std::move(repo).error();

  std::string endpoint = options.endpoint;
  while (!endpoint.empty() && endpoint.back() == '/') endpoint.pop_back();
  const std::string parent = "projects/" + repo->project + "/locations/" + repo->location;
  const std::string step =
      "Artifact Registry CreateRepository " + parent + "/repositories/" + repo->repository;

  auto bearer = google::bearer_header(google, step);
  if (!bearer) return std::move(bearer).error();
  json body = {{"format", "DOCKER"}};
  if (!options.kms_key.empty()) body["kmsKeyName"] = options.kms_key;
  HttpRequest create = google::google_request(
      "POST",
      endpoint + "/v1/" + parent + "/repositories?repositoryId=" + percent_encode(repo->repository),
      {*bearer, "Content-Type: application/json", "Accept: application/json"});
  create.body = body.dump();
  google::GoogleHttp http(options.transport);
  auto answer = http.send(step, create);
  if (!answer) return std::move(answer).error();
  if (answer->head.status == 409) return {};  // ALREADY_EXISTS: what we wanted
  if (answer->head.status == 401) google.invalidate();
  if (answer->head.status != 200) return google::google_error(step, *answer);

  auto op = json::parse(answer->body, nullptr, false);
  const auto deadline = std::chrono::steady_clock::now() + options.operation_timeout;
  for (;;) {
    if (!op.is_object()) return google::malformed(step, "answer is not an operation");
    if (oci::json::bool_field(op, "done").value_or(false)) return operation_outcome(step, op);
    if (!op.contains("name") || !op["name"].is_string())
      return google::malformed(step, "operation has no name");
    const std::string name = op["name"].get<std::string>();
    if (std::chrono::steady_clock::now() + options.poll_interval > deadline) {
      return Error{Errc::upstream_unavailable,
                   "google: " + step + ": operation " + name + " not done after " +
                       std::to_string(options.operation_timeout.count()) + " ms"};
    }
    std::this_thread::sleep_for(options.poll_interval);
    const std::string poll_step = step + ": GetOperation";
    auto poll_bearer = google::bearer_header(google, poll_step);
    if (!poll_bearer) return std::move(poll_bearer).error();
    HttpRequest get = google::google_request("GET", endpoint + "/v1/" + name,
                                             {*poll_bearer, "Accept: application/json"});
    auto polled = http.send(poll_step, get);
    if (!polled) return std::move(polled).error();
    if (polled->head.status != 200) return google::google_error(poll_step, *polled);
    op = json::parse(polled->body, nullptr, false);
  }
}

}  // namespace ocirelay::adapters
