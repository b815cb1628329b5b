// FakeAws: STS (query API, XML), ECR and Secrets Manager (JSON 1.1), the ECS credentials
// endpoint and EC2 IMDSv2, with the checks the real services make.
#include "tests/support/fake_aws.h"

#include <nlohmann/json.hpp>

#include <ctime>

#include "adapters/aws/sigv4.h"
#include "adapters/encoding.h"

namespace ocirelay::testing {
namespace {

using Clock = std::chrono::system_clock;

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// First value of `k` (repeated names: the first one sent), empty when absent.
std::string param(const std::multimap<std::string, std::string>& f, const std::string& k) {
  auto it = f.lower_bound(k);
  return it != f.end() && it->first == k ? it->second : std::string();
}

std::string iso8601(Clock::time_point t) {
  std::time_t tt = Clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::optional<Clock::time_point> parse_amz_date(const std::string& s) {
  std::tm tm{};
  if (s.size() != 16 || !strptime(s.c_str(), "%Y%m%dT%H%M%SZ", &tm)) return std::nullopt;
  return Clock::from_time_t(timegm(&tm));
}

}  // namespace

struct FakeAws::Request {
  std::string method;
  std::string target;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  std::multimap<std::string, std::string> form;  // decoded x-www-form-urlencoded body
  std::string header(const std::string& name) const {
    for (auto& [k, v] : headers) {
      if (lower(k) == lower(name)) return v;
    }
    return {};
  }
};

struct FakeAws::Reply {
  int status = 200;
  std::string content_type;
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;
};

namespace {

FakeAws::Reply json_error(int status, const std::string& type, const std::string& message);
FakeAws::Reply xml_error(int status, const std::string& code, const std::string& message);

}  // namespace

FakeAws::FakeAws(Options options)
    : options_(std::move(options)), server_([this](const HttpCall& call) {
        // SigV4 canonicalizes header names to lowercase, so HttpCall's lowercase map
        // verifies the same signatures as the headers on the wire.
        Request r{call.method, call.target, {call.headers.begin(), call.headers.end()}, call.body,
                  call.form};
        Reply reply;
        {
          std::lock_guard lock(mu_);
          reply = handle(r);
          if (reply.status >= 400 && reply.status < 500) ++rejected_;
        }
        HttpReply out{reply.status, {}, std::move(reply.body)};
        if (!reply.content_type.empty()) out.headers.emplace_back("Content-Type", reply.content_type);
        for (auto& h : reply.headers) out.headers.push_back(std::move(h));
        return out;
      }) {}

FakeAws::~FakeAws() = default;

void FakeAws::set_ecr_password(const std::string& p) {
  std::lock_guard lock(mu_);
  options_.ecr_password = p;
}
void FakeAws::set_ecr_token_seconds(int s) {
  std::lock_guard lock(mu_);
  options_.ecr_token_seconds = s;
}
void FakeAws::queue_ecr_password(const std::string& p) {
  std::lock_guard lock(mu_);
  queued_passwords_.push_back(p);
}
void FakeAws::set_secret(const std::string& id, const std::string& s) {
  std::lock_guard lock(mu_);
  secrets_[id] = s;
}
void FakeAws::set_sts_down(bool down) {
  std::lock_guard lock(mu_);
  sts_down_ = down;
}
void FakeAws::require_external_id(const std::string& role, const std::string& id) {
  std::lock_guard lock(mu_);
  external_ids_[role] = id;
}
int FakeAws::calls(const std::string& op) const {
  std::lock_guard lock(mu_);
  auto it = calls_.find(op);
  return it == calls_.end() ? 0 : it->second;
}
int FakeAws::rejected() const {
  std::lock_guard lock(mu_);
  return rejected_;
}
std::string FakeAws::last_signer(const std::string& op) const {
  std::lock_guard lock(mu_);
  auto it = last_signer_.find(op);
  return it == last_signer_.end() ? "" : it->second;
}
std::string FakeAws::last_body(const std::string& op) const {
  std::lock_guard lock(mu_);
  auto it = last_body_.find(op);
  return it == last_body_.end() ? "" : it->second;
}
std::vector<std::string> FakeAws::repositories() const {
  std::lock_guard lock(mu_);
  return repositories_;
}
std::vector<std::string> FakeAws::issued_secrets() const {
  std::lock_guard lock(mu_);
  return issued_;
}

namespace {

FakeAws::Reply json_error(int status, const std::string& type, const std::string& message) {
  nlohmann::json j = {{"__type", type}, {"message", message}};
  return FakeAws::Reply{status, "application/x-amz-json-1.1", j.dump(), {{"x-amzn-ErrorType", type}}};
}

FakeAws::Reply xml_error(int status, const std::string& code, const std::string& message) {
  return FakeAws::Reply{status, "text/xml",
                        "<ErrorResponse xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\">"
                        "<Error><Type>Sender</Type><Code>" + code + "</Code><Message>" +
                            message + "</Message></Error><RequestId>fake</RequestId></ErrorResponse>",
                        {}};
}

}  // namespace

FakeAws::Reply FakeAws::handle(const Request& req) {
  const std::string path = req.target.substr(0, req.target.find('?'));
  const std::string creds_prefix = "/latest/meta-data/iam/security-credentials/";

  if (path == "/latest/api/token") {
    if (req.method != "PUT") return Reply{405, "text/plain", "", {}};
    const std::string ttl = req.header("X-aws-ec2-metadata-token-ttl-seconds");
    if (ttl.empty() || std::stoi(ttl) < 1 || std::stoi(ttl) > 21600) return Reply{400, "text/plain", "", {}};
    ++calls_["imds-token"];
    imds_tokens_.push_back("imds-session-" + std::to_string(++serial_));
    return Reply{200, "text/plain", imds_tokens_.back(), {}};
  }
  if (path.starts_with(creds_prefix)) {
    const std::string tok = req.header("X-aws-ec2-metadata-token");
    if (std::find(imds_tokens_.begin(), imds_tokens_.end(), tok) == imds_tokens_.end()) {
      return Reply{401, "text/plain", "", {}};  // IMDSv1 GETs are refused
    }
    const std::string role = path.substr(creds_prefix.size());
    if (role.empty()) return Reply{200, "text/plain", options_.imds_role + "\n", {}};
    if (role != options_.imds_role) return Reply{404, "text/plain", "", {}};
    ++calls_["imds-credentials"];
    TempCredentials t;
    std::string id;
    std::string expiration = issue_temp("instance-profile", &t, &id);
    nlohmann::json j = {{"Code", "Success"}, {"LastUpdated", iso8601(Clock::now())},
                        {"Type", "AWS-HMAC"}, {"AccessKeyId", id},
                        {"SecretAccessKey", t.secret}, {"Token", t.token},
                        {"Expiration", expiration}};
    return Reply{200, "text/plain", j.dump(), {}};
  }
  if (path == "/ecs/credentials") {
    ++calls_["ecs"];
    if (req.header("Authorization") != options_.ecs_authorization) {
      return Reply{401, "application/json", R"({"message":"invalid authorization token"})", {}};
    }
    TempCredentials t;
    std::string id;
    std::string expiration = issue_temp("task-role", &t, &id);
    nlohmann::json j = {{"AccessKeyId", id}, {"SecretAccessKey", t.secret}, {"Token", t.token},
                        {"Expiration", expiration}, {"RoleArn", "arn:aws:iam::1:role/task"}};
    return Reply{200, "application/json", j.dump(), {}};
  }
  if (req.method == "POST" && path == "/") {
    if (!req.header("X-Amz-Target").empty()) return json_api(req);
    return sts(req);
  }
  return Reply{404, "text/plain", "", {}};
}

std::string FakeAws::issue_temp(const std::string& role_arn, TempCredentials* out, std::string* id) {
  const int n = ++serial_;
  *id = "ASIAFAKE" + std::to_string(n);
  out->secret = "fake-TEMP-secret-" + std::to_string(n) + "-zz";
  out->token = "fake-SESSION-token-" + std::to_string(n) + "-zz";
  out->role_arn = role_arn;
  temp_[*id] = *out;
  issued_.push_back(out->secret);
  issued_.push_back(out->token);
  return iso8601(Clock::now() + std::chrono::seconds(options_.sts_credentials_seconds));
}

FakeAws::Reply FakeAws::verify_signature(const Request& req, const std::string& service,
                                         bool json, std::string* signer) {
  auto refuse = [&](int status, const std::string& json_type, const std::string& sts_code,
                    const std::string& msg) {
    return json ? json_error(status, json_type, msg) : xml_error(status, sts_code, msg);
  };
  const std::string auth = req.header("Authorization");
  const std::string prefix = "AWS4-HMAC-SHA256 ";
  auto field = [&](const std::string& name) -> std::string {
    auto at = auth.find(name + "=");
    if (at == std::string::npos) return {};
    at += name.size() + 1;
    return auth.substr(at, auth.find(',', at) - at);
  };
  const std::string credential = field("Credential");
  const std::string signed_headers = field("SignedHeaders");
  const std::string signature = field("Signature");
  if (!auth.starts_with(prefix) || credential.empty() || signed_headers.empty() || signature.empty()) {
    return refuse(400, "IncompleteSignatureException", "IncompleteSignature",
                  "Authorization header requires Credential, SignedHeaders, Signature");
  }
  // AK/date/region/service/aws4_request
  std::vector<std::string> scope;
  for (std::size_t pos = 0;;) {
    auto slash = credential.find('/', pos);
    scope.push_back(credential.substr(pos, slash - pos));
    if (slash == std::string::npos) break;
    pos = slash + 1;
  }
  if (scope.size() != 5 || scope[4] != "aws4_request" || scope[2] != options_.region ||
      scope[3] != service) {
    return refuse(403, "InvalidSignatureException", "SignatureDoesNotMatch",
                  "Credential should be scoped to a valid region and service");
  }
  std::string secret;
  if (scope[0] == options_.access_key_id) {
    secret = options_.secret_access_key;
  } else if (auto it = temp_.find(scope[0]); it != temp_.end()) {
    if (req.header("X-Amz-Security-Token") != it->second.token) {
      return refuse(403, "UnrecognizedClientException", "InvalidClientTokenId",
                    "The security token included in the request is invalid.");
    }
    secret = it->second.secret;
  } else {
    return refuse(403, "UnrecognizedClientException", "InvalidClientTokenId",
                  "The security token included in the request is invalid.");
  }
  const std::string date = req.header("X-Amz-Date");
  auto when = parse_amz_date(date);
  if (!when || scope[1] != date.substr(0, 8)) {
    return refuse(400, "IncompleteSignatureException", "IncompleteSignature", "bad X-Amz-Date");
  }
  if (*when > Clock::now() + std::chrono::minutes(5) ||
      *when < Clock::now() - std::chrono::minutes(5)) {
    return refuse(403, "InvalidSignatureException", "SignatureDoesNotMatch", "Signature expired");
  }
  adapters::aws::SigV4Request sreq;
  sreq.method = req.method;
  sreq.path = req.target.substr(0, req.target.find('?'));
  sreq.body = req.body;
  std::vector<std::string> names;
  for (std::size_t pos = 0;;) {
    auto semi = signed_headers.find(';', pos);
    names.push_back(signed_headers.substr(pos, semi - pos));
    if (semi == std::string::npos) break;
    pos = semi + 1;
  }
  for (const char* must : {"host", "x-amz-date"}) {
    if (std::find(names.begin(), names.end(), must) == names.end()) {
      return refuse(403, "InvalidSignatureException", "SignatureDoesNotMatch",
                    std::string(must) + " must be signed");
    }
  }
  if (json && std::find(names.begin(), names.end(), "x-amz-target") == names.end()) {
    return refuse(403, "InvalidSignatureException", "SignatureDoesNotMatch",
                  "x-amz-target must be signed");
  }
  for (auto& [k, v] : req.headers) {
    if (std::find(names.begin(), names.end(), lower(k)) != names.end()) sreq.headers.emplace_back(k, v);
  }
  adapters::aws::AwsCredentials c{scope[0], secret, "", std::nullopt};
  auto expected = adapters::aws::sigv4_signature(sreq, c, options_.region, service, date);
  if (expected.signature != signature) {
    return refuse(403, "InvalidSignatureException", "SignatureDoesNotMatch",
                  "The request signature we calculated does not match the signature you provided.");
  }
  *signer = scope[0];
  return Reply{0, "", "", {}};
}

FakeAws::Reply FakeAws::sts(const Request& req) {
  if (sts_down_) return xml_error(503, "ServiceUnavailable", "Service is unavailable");
  if (req.header("Content-Type").find("application/x-www-form-urlencoded") != 0) {
    return xml_error(400, "InvalidAction", "expected a form body");
  }
  const auto& f = req.form;
  const std::string action = param(f, "Action");
  const std::string role = param(f, "RoleArn");
  if (param(f, "Version") != "2011-06-15" || role.empty() || param(f, "RoleSessionName").empty()) {
    return xml_error(400, "MissingParameter", "Version, RoleArn and RoleSessionName are required");
  }
  ++calls_[action];
  last_body_[action] = req.body;
  if (action == "AssumeRoleWithWebIdentity") {
    if (param(f, "WebIdentityToken") != options_.web_identity_token) {
      return xml_error(400, "InvalidIdentityToken", "Couldn't retrieve verification key from your identity provider");
    }
  } else if (action == "AssumeRole") {
    std::string signer;
    if (Reply r = verify_signature(req, "sts", false, &signer); r.status != 0) return r;
    last_signer_[action] = signer;
    if (auto it = external_ids_.find(role); it != external_ids_.end() &&
                                            param(f, "ExternalId") != it->second) {
      return xml_error(403, "AccessDenied", "User is not authorized to perform: sts:AssumeRole on resource: " + role);
    }
  } else {
    return xml_error(400, "InvalidAction", "Could not find operation " + action);
  }
  TempCredentials t;
  std::string id;
  std::string expiration = issue_temp(role, &t, &id);
  return Reply{200, "text/xml",
               "<" + action + "Response xmlns=\"https://sts.amazonaws.com/doc/2011-06-15/\"><" +
                   action + "Result><Credentials><AccessKeyId>" + id +
                   "</AccessKeyId><SecretAccessKey>" + t.secret +
                   "</SecretAccessKey><SessionToken>" + t.token +
                   "</SessionToken><Expiration>" + expiration +
                   "</Expiration></Credentials><AssumedRoleUser><Arn>" + role +
                   "/session</Arn></AssumedRoleUser></" + action +
                   "Result><ResponseMetadata><RequestId>fake</RequestId></ResponseMetadata></" +
                   action + "Response>",
               {}};
}

void FakeAws::set_images(const std::string& repository, std::vector<std::pair<std::string, std::string>> tagged) {
  std::lock_guard lock(mu_);
  images_[repository] = std::move(tagged);
}

void FakeAws::set_list_page_size(std::size_t page_size) {
  std::lock_guard lock(mu_);
  list_page_size_ = std::max<std::size_t>(page_size, 1);
}

FakeAws::Reply FakeAws::json_api(const Request& req) {
  const std::string target = req.header("X-Amz-Target");
  const std::string ecr = "AmazonEC2ContainerRegistry_V20150921.";
  std::string op;
  std::string service;
  if (target.starts_with(ecr)) {
    op = target.substr(ecr.size());
    service = "ecr";
  } else if (target == "secretsmanager.GetSecretValue") {
    op = "GetSecretValue";
    service = "secretsmanager";
  } else {
    return json_error(400, "UnknownOperationException", "unknown target");
  }
  if (req.header("Content-Type") != "application/x-amz-json-1.1") {
    return json_error(400, "SerializationException", "expected application/x-amz-json-1.1");
  }
  ++calls_[op];
  last_body_[op] = req.body;
  std::string signer;
  if (Reply r = verify_signature(req, service, true, &signer); r.status != 0) return r;
  last_signer_[op] = signer;
  auto body = nlohmann::json::parse(req.body, nullptr, false);
  if (!body.is_object()) return json_error(400, "SerializationException", "body is not JSON");

  if (op == "GetAuthorizationToken") {
    const double expires =
        std::chrono::duration<double>(Clock::now().time_since_epoch()).count() +
        options_.ecr_token_seconds;
    std::string password = options_.ecr_password;
    if (!queued_passwords_.empty()) {
      password = queued_passwords_.front();
      queued_passwords_.erase(queued_passwords_.begin());
    }
    issued_.push_back(password);
    nlohmann::json data = {
        {"authorizationToken", adapters::base64_encode("AWS:" + password)},
        {"expiresAt", expires},
        {"proxyEndpoint", "https://123456789012.dkr.ecr." + options_.region + ".amazonaws.com"}};
    return Reply{200, "application/x-amz-json-1.1",
                 nlohmann::json{{"authorizationData", {data}}}.dump(), {}};
  }
  if (op == "CreateRepository") {
    const std::string name = body.value("repositoryName", std::string());
    if (name.empty()) return json_error(400, "InvalidParameterException", "repositoryName required");
    if (body.contains("imageTagMutability") && body["imageTagMutability"] != "MUTABLE" &&
        body["imageTagMutability"] != "IMMUTABLE") {
      return json_error(400, "InvalidParameterException", "invalid imageTagMutability");
    }
    if (body.contains("encryptionConfiguration")) {
      auto& e = body["encryptionConfiguration"];
      if (e.value("encryptionType", "") != "KMS" && e.value("encryptionType", "") != "AES256") {
        return json_error(400, "InvalidParameterException", "invalid encryptionType");
      }
    }
    if (std::find(repositories_.begin(), repositories_.end(), name) != repositories_.end()) {
      return json_error(400, "RepositoryAlreadyExistsException",
                        "The repository with name '" + name + "' already exists");
    }
    repositories_.push_back(name);
    return Reply{200, "application/x-amz-json-1.1",
                 nlohmann::json{{"repository", {{"repositoryName", name}}}}.dump(), {}};
  }
  if (op == "ListImages") {
    const std::string name = body.value("repositoryName", std::string());
    if (name.empty()) return json_error(400, "InvalidParameterException", "repositoryName required");
    auto max = body.value("maxResults", 100);
    if (max < 1 || max > 1000) return json_error(400, "InvalidParameterException", "maxResults must be 1..1000");
    auto it = images_.find(name);
    if (it == images_.end())
      return json_error(400, "RepositoryNotFoundException",
                        "The repository with name '" + name + "' does not exist in the registry");
    std::size_t start = 0;
    if (body.contains("nextToken")) {
      const std::string token = body.value("nextToken", std::string());
      if (!token.starts_with("page-")) return json_error(400, "InvalidParameterException", "invalid nextToken");
      start = std::stoul(token.substr(5));
    }
    const std::size_t n = std::min<std::size_t>(static_cast<std::size_t>(max), list_page_size_);
    nlohmann::json ids = nlohmann::json::array();
    for (std::size_t i = start; i < it->second.size() && i < start + n; ++i)
      ids.push_back({{"imageDigest", it->second[i].second}, {"imageTag", it->second[i].first}});
    nlohmann::json j = {{"imageIds", ids}};
    if (start + n < it->second.size()) j["nextToken"] = "page-" + std::to_string(start + n);
    return Reply{200, "application/x-amz-json-1.1", j.dump(), {}};
  }
  if (op == "GetSecretValue") {
    const std::string id = body.value("SecretId", std::string());
    auto it = secrets_.find(id);
    if (it == secrets_.end()) {
      return json_error(400, "ResourceNotFoundException", "Secrets Manager can't find the specified secret.");
    }
    issued_.push_back(it->second);
    nlohmann::json j = {{"ARN", id}, {"Name", id}, {"SecretString", it->second},
                        {"VersionId", "v1"}, {"CreatedDate", 1.7e9}};
    return Reply{200, "application/x-amz-json-1.1", j.dump(), {}};
  }
  return json_error(400, "UnknownOperationException", "unknown operation " + op);
}

}  // namespace ocirelay::testing
