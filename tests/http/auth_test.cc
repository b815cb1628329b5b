// http/ client authentication: htpasswd entries made by the real `htpasswd -B`, access
// rules, JWTs signed and verified with keys made by `openssl`, the failure limiter, and an
// Authenticator answering on a real listener (401 + challenge, 403, 429, the token
// endpoint's scope intersection).
#include "http/auth.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "http/failure_limiter.h"
#include "http/htpasswd.h"
#include "http/listener.h"
#include "http/token_signer.h"
#include "metrics/metrics.h"
#include "oci/encoding.h"
#include "tests/support/files.h"
#include "tests/support/loopback_http.h"
#include "tests/support/process.h"
#include "tests/support/requirements.h"

namespace ocirelay::http {
namespace {

namespace fs = std::filesystem;
using ocirelay::testing::CommandResult;
using ocirelay::testing::read_file;
using ocirelay::testing::run_command;
using ocirelay::testing::TempDir;
using ocirelay::testing::write_file;

// "user:$2y$05$..." from the real htpasswd (cost 5 keeps the tests fast).
std::string htpasswd_entry(const std::string& user, const std::string& password, const char* kind = "-B") {
  CommandResult r = run_command({"htpasswd", "-nb", kind, "-C", "5", user, password});
  if (std::string(kind) != "-B") r = run_command({"htpasswd", "-nb", kind, user, password});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  std::string line = r.out.substr(0, r.out.find('\n'));
  return line;
}

std::string make_key(const fs::path& dir, const std::string& name, const std::vector<std::string>& opts) {
  std::vector<std::string> args = {"openssl", "genpkey"};
  args.insert(args.end(), opts.begin(), opts.end());
  args.push_back("-out");
  args.push_back((dir / name).string());
  auto r = run_command(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return read_file(dir / name);
}

const std::vector<std::string> kEc = {"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"};
const std::vector<std::string> kRsa = {"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"};


std::string basic(const std::string& user, const std::string& password) {
  static constexpr char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string in = user + ":" + password, out;
  std::uint32_t acc = 0;
  int bits = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) out += a[(acc >> (bits -= 6)) & 63];
  }
  if (bits) out += a[(acc << (6 - bits)) & 63];
  while (out.size() % 4) out += '=';
  return "Basic " + out;
}

std::int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class HtpasswdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!ocirelay::testing::require_programs({"htpasswd"}, ocirelay::testing::NeedsRoot::no)) GTEST_SKIP();
  }
};

TEST_F(HtpasswdTest, VerifiesBcryptEntriesMadeByHtpasswd) {
  std::string alice = htpasswd_entry("alice", "s3cret-Alice");
  std::string bob = htpasswd_entry("bob", "bob:has:colons");
  ASSERT_TRUE(alice.starts_with("alice:$2y$05$")) << alice;
  // $2b$ is the same algorithm under another name: libxcrypt takes both.
  std::string bob_2b = bob;
  bob_2b.replace(bob_2b.find("$2y$"), 4, "$2b$");
  auto h = Htpasswd::parse("# users\n" + alice + "\n\n" + bob_2b + "\r\n", "users.htpasswd");
  ASSERT_TRUE(h.ok()) << h.error().to_string();
  EXPECT_EQ(h->size(), 2u);
  EXPECT_TRUE(h->has_user("alice"));
  EXPECT_TRUE(h->verify("alice", "s3cret-Alice"));
  EXPECT_FALSE(h->verify("alice", "s3cret-alice"));
  EXPECT_FALSE(h->verify("alice", ""));
  EXPECT_FALSE(h->verify("alice", std::string("s3cret-Alice\0x", 14)));
  EXPECT_TRUE(h->verify("bob", "bob:has:colons"));
  EXPECT_FALSE(h->verify("carol", "s3cret-Alice"));
}

TEST_F(HtpasswdTest, RefusesWeakHashesAndMalformedLinesWithoutEchoingThem) {
  std::string md5 = htpasswd_entry("old", "pw", "-m");
  std::string alice = htpasswd_entry("alice", "pw");
  auto h = Htpasswd::parse(alice + "\n" + md5 + "\n", "users");
  ASSERT_FALSE(h.ok());
  EXPECT_NE(h.error().message.find("users:2"), std::string::npos) << h.error().message;
  EXPECT_NE(h.error().message.find("htpasswd -B"), std::string::npos) << h.error().message;
  EXPECT_EQ(h.error().message.find(md5.substr(4)), std::string::npos) << "the hash leaked";
  EXPECT_FALSE(Htpasswd::parse("no-colon-here\n", "users").ok());
  EXPECT_FALSE(Htpasswd::parse(alice + "\n" + alice + "\n", "users").ok()) << "a user listed twice";
  EXPECT_FALSE(Htpasswd::load("/nonexistent/htpasswd").ok());
}

TEST(AccessRules, FirstMatchWinsAndStarIncludesAnonymous) {
  std::vector<AccessRule> rules = {
      {{"ci-bot"}, {"apps/**"}, bit(Action::pull) | bit(Action::push)},
      {{"admin"}, {"**"}, bit(Action::pull) | bit(Action::push) | bit(Action::delete_)},
      {{"authenticated"}, {"team/*"}, bit(Action::pull) | bit(Action::push)},
      {{"*"}, {"secret/**"}, 0},  // a rule with no actions denies
      {{"*"}, {"**"}, bit(Action::pull)},
  };
  EXPECT_EQ(allowed_actions(rules, "ci-bot", "apps/web"), bit(Action::pull) | bit(Action::push));
  EXPECT_EQ(allowed_actions(rules, "ci-bot", "apps/a/b"), bit(Action::pull) | bit(Action::push));
  EXPECT_EQ(allowed_actions(rules, "ci-bot", "apps"), bit(Action::pull)) << "apps/** is not apps";
  EXPECT_EQ(allowed_actions(rules, "ci-bot", "other/x"), bit(Action::pull));
  EXPECT_EQ(allowed_actions(rules, "admin", "apps/web"), 7);
  EXPECT_EQ(allowed_actions(rules, "", "apps/web"), bit(Action::pull));
  EXPECT_EQ(allowed_actions(rules, "", "team/x"), bit(Action::pull)) << "anonymous is not authenticated";
  EXPECT_EQ(allowed_actions(rules, "somebody", "team/x"), bit(Action::pull) | bit(Action::push));
  EXPECT_EQ(allowed_actions(rules, "somebody", "secret/x"), 0);
  EXPECT_EQ(allowed_actions(rules, "admin", "secret/x"), 7) << "admin's rule comes first";
  EXPECT_EQ(allowed_actions({}, "admin", "x"), 0) << "no rule: nothing";
  EXPECT_EQ(action_for(Method::get), Action::pull);
  EXPECT_EQ(action_for(Method::head), Action::pull);
  EXPECT_EQ(action_for(Method::patch), Action::push);
  EXPECT_EQ(action_for(Method::put), Action::push);
  EXPECT_EQ(action_for(Method::post), Action::push);
  EXPECT_EQ(action_for(Method::delete_), Action::delete_);
}

TEST(Scopes, ParseRepositoryScopes) {
  auto s = parse_scope("repository:apps/web:pull,push");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->name, "apps/web");
  EXPECT_EQ(s->actions, bit(Action::pull) | bit(Action::push));
  EXPECT_EQ(parse_scope("repository:a:*")->actions, 7);
  EXPECT_EQ(parse_scope("repository:a:delete,bogus")->actions, bit(Action::delete_));
  EXPECT_FALSE(parse_scope("registry:catalog:*"));
  EXPECT_FALSE(parse_scope("repository:a:bogus"));
  EXPECT_FALSE(parse_scope("repository::pull"));
  EXPECT_FALSE(parse_scope("nonsense"));
}

class TokenSignerTest : public ::testing::TestWithParam<std::string> {
 protected:
  void SetUp() override {
    if (!ocirelay::testing::require_programs({"openssl"}, ocirelay::testing::NeedsRoot::no)) GTEST_SKIP();
  }
  std::string key(const std::string& name) { return make_key(dir.path(), name, GetParam() == "ES256" ? kEc : kRsa); }
  TempDir dir;
};

TEST_P(TokenSignerTest, IssuedTokensVerifyAndCarryTheirClaims) {
  auto signer = TokenSigner::from_pem(key("k.pem"), "k.pem", "issuer-x", "svc");
  ASSERT_TRUE(signer.ok()) << signer.error().to_string();
  EXPECT_EQ(signer->algorithm(), GetParam());
  TokenClaims c;
  c.subject = "ci-bot";
  c.access = {{"apps/web", bit(Action::pull) | bit(Action::push)}, {"apps/db", bit(Action::pull)}};
  c.issued_at = now_s();
  c.expires_at = now_s() + 300;
  auto t = signer->sign(c);
  ASSERT_TRUE(t.ok());
  auto v = signer->verify(*t, now_s());
  ASSERT_TRUE(v.ok()) << v.error().to_string();
  EXPECT_EQ(v->subject, "ci-bot");
  ASSERT_EQ(v->access.size(), 2u);
  EXPECT_EQ(v->access[0].name, "apps/web");
  EXPECT_EQ(v->access[0].actions, bit(Action::pull) | bit(Action::push));
  EXPECT_EQ(v->access[1].actions, bit(Action::pull));
  EXPECT_FALSE(v->refresh);

  // A refresh token is not an access token, and the other way round.
  TokenClaims r = c;
  r.refresh = true;
  auto rt = signer->sign(r);
  ASSERT_TRUE(rt.ok());
  EXPECT_FALSE(signer->verify(*rt, now_s()).ok());
  EXPECT_TRUE(signer->verify(*rt, now_s(), true).ok());
  EXPECT_FALSE(signer->verify(*t, now_s(), true).ok());
}

TEST_P(TokenSignerTest, RefusesExpiredForeignTamperedAndMisaddressedTokens) {
  const std::string pem = key("k.pem");
  auto signer = TokenSigner::from_pem(pem, "k.pem", "iss", "svc");
  ASSERT_TRUE(signer.ok());
  TokenClaims c;
  c.subject = "u";
  c.access = {{"apps/web", bit(Action::pull)}};
  c.issued_at = now_s() - 600;
  c.expires_at = now_s() - 1;
  auto expired = signer->verify(*signer->sign(c), now_s());
  ASSERT_FALSE(expired.ok());
  EXPECT_EQ(expired.error().code, Errc::unauthorized);
  EXPECT_NE(expired.error().message.find("expired"), std::string::npos);

  c.issued_at = now_s();
  c.expires_at = now_s() + 300;
  const std::string good = *signer->sign(c);
  // Another key of the same kind.
  auto other = TokenSigner::from_pem(key("other.pem"), "other.pem", "iss", "svc");
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->verify(good, now_s()).ok());
  EXPECT_FALSE(signer->verify(*other->sign(c), now_s()).ok());
  // Same key, other audience or issuer.
  EXPECT_FALSE(TokenSigner::from_pem(pem, "k", "iss", "another-svc")->verify(good, now_s()).ok());
  EXPECT_FALSE(TokenSigner::from_pem(pem, "k", "another-iss", "svc")->verify(good, now_s()).ok());
  // Claims changed after signing (push added), the signature cut, alg "none".
  auto dot1 = good.find('.'), dot2 = good.rfind('.');
  nlohmann::json claims = {{"iss", "iss"}, {"aud", "svc"}, {"sub", "u"}, {"exp", now_s() + 300},
                           {"access", {{{"type", "repository"}, {"name", "apps/web"}, {"actions", {"pull", "push"}}}}}};
  const std::string tampered = good.substr(0, dot1) + "." + oci::base64url_encode(claims.dump()) + good.substr(dot2);
  EXPECT_FALSE(signer->verify(tampered, now_s()).ok());
  EXPECT_FALSE(signer->verify(good.substr(0, dot2) + ".", now_s()).ok());
  const std::string none = oci::base64url_encode(R"({"alg":"none","typ":"JWT"})") + "." + oci::base64url_encode(claims.dump()) + ".";
  EXPECT_FALSE(signer->verify(none, now_s()).ok());
  EXPECT_FALSE(signer->verify("garbage", now_s()).ok());
  EXPECT_FALSE(signer->verify("a.b.c.d", now_s()).ok());
  // The error never carries the token.
  auto e = signer->verify(tampered, now_s());
  EXPECT_EQ(e.error().message.find(tampered.substr(dot1 + 1, 20)), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(Keys, TokenSignerTest, ::testing::Values("ES256", "RS256"));

TEST(TokenSignerKeys, RefusesKeysOfOtherKindsAndSizes) {
  if (!ocirelay::testing::require_programs({"openssl"}, ocirelay::testing::NeedsRoot::no)) return;
  TempDir dir;
  auto p384 = make_key(dir.path(), "p384.pem", {"-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-384"});
  auto r = TokenSigner::from_pem(p384, "p384.pem", "i", "s");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("P-256"), std::string::npos) << r.error().message;
  auto small = make_key(dir.path(), "rsa1024.pem", {"-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"});
  EXPECT_FALSE(TokenSigner::from_pem(small, "rsa1024.pem", "i", "s").ok());
  EXPECT_FALSE(TokenSigner::from_pem("not a key", "x", "i", "s").ok());
  EXPECT_FALSE(TokenSigner::load((dir / "missing.pem").string(), "i", "s").ok());
}

TEST(FailureLimiter, LocksOutAnAddressAfterTooManyFailuresForAWhile) {
  using namespace std::chrono_literals;
  FailureLimiter l(3, 60s, 30s, 4);
  auto t0 = FailureLimiter::Clock::now();
  l.record_failure("10.0.0.1", t0);
  l.record_failure("10.0.0.1", t0 + 1s);
  EXPECT_EQ(l.blocked("10.0.0.1", t0 + 2s).count(), 0);
  l.record_failure("10.0.0.1", t0 + 2s);
  EXPECT_EQ(l.blocked("10.0.0.1", t0 + 2s).count(), 30);
  EXPECT_EQ(l.blocked("10.0.0.1", t0 + 31s).count(), 1);
  EXPECT_EQ(l.blocked("10.0.0.2", t0 + 2s).count(), 0) << "other addresses are not affected";
  EXPECT_EQ(l.blocked("10.0.0.1", t0 + 33s).count(), 0) << "the lockout ends";
  // Failures further apart than the window do not add up.
  l.record_failure("10.0.0.3", t0);
  l.record_failure("10.0.0.3", t0 + 1s);
  l.record_failure("10.0.0.3", t0 + 70s);
  EXPECT_EQ(l.blocked("10.0.0.3", t0 + 70s).count(), 0);
  // A flood of addresses stays bounded and keeps counting the newest.
  for (int i = 0; i < 100; ++i) l.record_failure("192.0.2." + std::to_string(i), t0 + 80s);
  for (int i = 0; i < 3; ++i) l.record_failure("198.51.100.1", t0 + 81s);
  EXPECT_GT(l.blocked("198.51.100.1", t0 + 81s).count(), 0);
}

// An Authenticator in front of a listener: "/v2/" needs a user, "/r/<name>" is a
// repository route (the method says the action), "/token" the token endpoint.
class AuthenticatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!ocirelay::testing::require_programs({"htpasswd", "openssl"}, ocirelay::testing::NeedsRoot::no))
      GTEST_SKIP();
  }
  void start(bool tokens) {
    write_file(dir / "htpasswd", htpasswd_entry("ci-bot", "ci-pass") + "\n" + htpasswd_entry("reader", "read-pass") + "\n");
    AuthOptions o;
    o.htpasswd_file = (dir / "htpasswd").string();
    o.max_failures = 3;
    if (tokens) {
      make_key(dir.path(), "token.pem", kEc);
      o.token = TokenOptions{};
      o.token->key_file = (dir / "token.pem").string();
      o.token->service = "test-svc";
    }
    o.access = {{{"ci-bot"}, {"apps/**"}, bit(Action::pull) | bit(Action::push)},
                {{"*"}, {"secret/**"}, 0},
                {{"*"}, {"**"}, bit(Action::pull)}};
    auto a = Authenticator::create(std::move(o));
    ASSERT_TRUE(a.ok()) << a.error().to_string();
    auth = std::move(*a);
    RouteTable routes;
    routes.exact("/token", [this](Exchange& ex) { return auth->serve_token(ex); });
    routes.prefix("/", [this](Exchange& ex) -> boost::asio::awaitable<Outcome> {
      std::string_view t = ex.target();
      std::optional<AccessRequest> what, also;  // /r/<name>[?from=<name>]: a mount reads <from>
      if (t.starts_with("/r/")) {
        std::string name(t.substr(3, t.find('?') == std::string_view::npos ? t.npos : t.find('?') - 3));
        what = AccessRequest{name, name, action_for(ex.method())};
        if (auto q = t.find("?from="); q != std::string_view::npos) {
          std::string from(t.substr(q + 6));
          also = AccessRequest{from, from, Action::pull};
        }
      }
      auto admitted = co_await auth->guard(ex, what ? &*what : nullptr, also ? &*also : nullptr);
      if (admitted.refused) co_return *admitted.refused;
      if (t == "/whoami") co_return co_await ex.send(Response(200), admitted.user);
      co_return co_await ex.send(Response(200), "ok");
    });
    ListenerOptions lo;
    lo.port = 0;
    lo.io_threads = 1;
    auto l = Listener::create(std::move(lo), std::move(routes), metrics);
    ASSERT_TRUE(l.ok()) << l.error().to_string();
    listener = std::move(*l);
    io = std::thread([this] { listener->run(); });
  }
  void TearDown() override {
    if (listener) {
      listener->stop();
      io.join();
    }
  }
  ocirelay::testing::HttpResponse get(const std::string& method, const std::string& target,
                                      std::map<std::string, std::string> headers = {}) {
    return ocirelay::testing::http_request(listener->port(), method, target, headers);
  }
  std::string token_for(const std::string& user, const std::string& pw, const std::string& scope) {
    auto r = get("GET", "/token?service=test-svc&scope=" + scope, {{"Authorization", basic(user, pw)}});
    EXPECT_EQ(r.status, 200) << r.body;
    auto j = nlohmann::json::parse(r.body, nullptr, false);
    return j.is_object() && j.contains("token") ? j["token"].get<std::string>() : "";
  }

  TempDir dir;
  metrics::Metrics metrics;
  std::unique_ptr<Authenticator> auth;
  std::unique_ptr<Listener> listener;
  std::thread io;
};

TEST_F(AuthenticatorTest, BasicChallengesDeniesAndAllows) {
  start(false);
  auto base = get("GET", "/v2/");
  EXPECT_EQ(base.status, 401);
  EXPECT_EQ(base.headers["www-authenticate"], "Basic realm=\"ocirelay\"");
  EXPECT_EQ(get("GET", "/v2/", {{"Authorization", basic("reader", "read-pass")}}).status, 200);
  EXPECT_EQ(get("GET", "/r/apps/web").status, 200) << "anyone may pull";
  EXPECT_EQ(get("GET", "/r/apps/web", {{"Authorization", basic("", "")}}).status, 200) << "empty Basic is anonymous";
  auto anon_push = get("PUT", "/r/apps/web");
  EXPECT_EQ(anon_push.status, 401);
  EXPECT_NE(anon_push.body.find("UNAUTHORIZED"), std::string::npos);
  EXPECT_EQ(get("PUT", "/r/apps/web", {{"Authorization", basic("ci-bot", "ci-pass")}}).status, 200);
  EXPECT_EQ(get("PUT", "/r/apps/web", {{"Authorization", basic("ci-bot", "ci-pass")}}).status, 200) << "cached";
  auto denied = get("PUT", "/r/apps/web", {{"Authorization", basic("reader", "read-pass")}});
  EXPECT_EQ(denied.status, 403);
  EXPECT_NE(denied.body.find("DENIED"), std::string::npos);
  EXPECT_EQ(get("PUT", "/r/other/x", {{"Authorization", basic("ci-bot", "ci-pass")}}).status, 403);
  auto wrong = get("GET", "/r/apps/web", {{"Authorization", basic("ci-bot", "nope")}});
  EXPECT_EQ(wrong.status, 401) << "wrong credentials are refused even where anonymous may pull";
  EXPECT_EQ(wrong.body.find("nope"), std::string::npos);
  EXPECT_EQ(get("GET", "/v2/", {{"Authorization", "Bearer abc"}}).status, 401);
  EXPECT_EQ(get("GET", "/token").status, 404) << "no token endpoint without token options";
  // A mount also needs pull on its source.
  EXPECT_EQ(get("POST", "/r/apps/web?from=apps/db", {{"Authorization", basic("ci-bot", "ci-pass")}}).status, 200);
  EXPECT_EQ(get("POST", "/r/apps/web?from=secret/x", {{"Authorization", basic("ci-bot", "ci-pass")}}).status, 403);
  // The handler learns who it serves.
  EXPECT_EQ(get("GET", "/whoami", {{"Authorization", basic("reader", "read-pass")}}).body, "reader");
}

TEST_F(AuthenticatorTest, RepeatedFailuresFromOneAddressGet429) {
  start(false);
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(get("GET", "/v2/", {{"Authorization", basic("ci-bot", "wrong" + std::to_string(i))}}).status, 401);
  auto limited = get("GET", "/v2/", {{"Authorization", basic("ci-bot", "ci-pass")}});
  EXPECT_EQ(limited.status, 429) << "even the right password, while locked out";
  EXPECT_NE(limited.body.find("TOOMANYREQUESTS"), std::string::npos);
  EXPECT_GT(std::stoi(limited.headers["retry-after"]), 0);
  EXPECT_EQ(get("GET", "/r/apps/web").status, 200) << "anonymous pulls need no password check";
}

TEST_F(AuthenticatorTest, TokensGrantTheIntersectionOfScopeAndRules) {
  start(true);
  // The realm points back at the host the client asked (here the listener's address).
  const std::string realm = "http://127.0.0.1:" + std::to_string(listener->port()) + "/token";
  auto base = get("GET", "/v2/");
  EXPECT_EQ(base.status, 401);
  EXPECT_EQ(base.headers["www-authenticate"], "Bearer realm=\"" + realm + "\",service=\"test-svc\"");
  auto push = get("POST", "/r/apps/web");
  EXPECT_EQ(push.headers["www-authenticate"],
            "Bearer realm=\"" + realm + "\",service=\"test-svc\",scope=\"repository:apps/web:pull,push\"");

  // ci-bot asks for push on apps/web and other/x: it gets push on apps/web only.
  auto r = get("GET", "/token?service=test-svc&scope=repository%3Aapps%2Fweb%3Apull%2Cpush&scope=repository:other/x:pull,push",
               {{"Authorization", basic("ci-bot", "ci-pass")}});
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["token"], j["access_token"]);
  EXPECT_EQ(j["expires_in"], 900);
  EXPECT_TRUE(j["issued_at"].is_string());
  EXPECT_FALSE(j.contains("refresh_token"));
  auto signer = TokenSigner::load((dir / "token.pem").string(), "ocirelay", "test-svc");
  auto claims = signer->verify(j["token"].get<std::string>(), now_s());
  ASSERT_TRUE(claims.ok()) << claims.error().to_string();
  EXPECT_EQ(claims->subject, "ci-bot");
  ASSERT_EQ(claims->access.size(), 2u);
  EXPECT_EQ(claims->access[0].name, "apps/web");
  EXPECT_EQ(claims->access[0].actions, bit(Action::pull) | bit(Action::push));
  EXPECT_EQ(claims->access[1].name, "other/x");
  EXPECT_EQ(claims->access[1].actions, bit(Action::pull));

  const std::string bearer = "Bearer " + j["token"].get<std::string>();
  EXPECT_EQ(get("GET", "/v2/", {{"Authorization", bearer}}).status, 200);
  EXPECT_EQ(get("PUT", "/r/apps/web", {{"Authorization", bearer}}).status, 200);
  EXPECT_EQ(get("PUT", "/r/other/x", {{"Authorization", bearer}}).status, 403) << "ci-bot may not push there";
  auto narrow = get("PUT", "/r/apps/db", {{"Authorization", bearer}});
  EXPECT_EQ(narrow.status, 401) << "allowed, but not in this token: ask for another";
  EXPECT_NE(narrow.headers["www-authenticate"].find("insufficient_scope"), std::string::npos);

  // Anonymous tokens: pull only; a reader asking for push gets pull.
  auto anon = get("GET", "/token?service=test-svc&scope=repository:apps/web:pull,push");
  ASSERT_EQ(anon.status, 200);
  auto ac = signer->verify(nlohmann::json::parse(anon.body)["token"].get<std::string>(), now_s());
  ASSERT_TRUE(ac.ok());
  ASSERT_EQ(ac->access.size(), 1u);
  EXPECT_EQ(ac->access[0].actions, bit(Action::pull));
  EXPECT_EQ(get("GET", "/token?scope=repository:apps/web:pull", {{"Authorization", basic("ci-bot", "x")}}).status, 401);
  EXPECT_EQ(get("GET", "/token?service=other&scope=repository:apps/web:pull").status, 400);
}

TEST_F(AuthenticatorTest, OAuthPasswordAndRefreshGrants) {
  start(true);
  auto post = [&](const std::string& form) {
    return ocirelay::testing::http_request_with_body(
        listener->port(), "POST", "/token", {{"Content-Type", "application/x-www-form-urlencoded"}}, form);
  };
  auto r = post("grant_type=password&username=ci-bot&password=ci-pass&service=test-svc&client_id=ctr"
                "&access_type=offline&scope=repository%3Aapps%2Fweb%3Apull%2Cpush+repository%3Aapps%2Fdb%3Apull");
  ASSERT_EQ(r.status, 200) << r.body;
  auto j = nlohmann::json::parse(r.body);
  ASSERT_TRUE(j.contains("refresh_token"));
  auto signer = TokenSigner::load((dir / "token.pem").string(), "ocirelay", "test-svc");
  auto claims = signer->verify(j["access_token"].get<std::string>(), now_s());
  ASSERT_TRUE(claims.ok());
  EXPECT_EQ(claims->access.size(), 2u);
  const std::string refresh = j["refresh_token"];
  EXPECT_FALSE(signer->verify(refresh, now_s()).ok()) << "a refresh token is no access token";
  EXPECT_EQ(get("PUT", "/r/apps/web", {{"Authorization", "Bearer " + refresh}}).status, 401);

  auto again = post("grant_type=refresh_token&refresh_token=" + refresh +
                    "&service=test-svc&scope=repository:apps/web:push");
  ASSERT_EQ(again.status, 200) << again.body;
  auto c2 = signer->verify(nlohmann::json::parse(again.body)["token"].get<std::string>(), now_s());
  ASSERT_TRUE(c2.ok());
  EXPECT_EQ(c2->subject, "ci-bot");
  ASSERT_EQ(c2->access.size(), 1u);
  EXPECT_EQ(c2->access[0].actions, bit(Action::push));

  EXPECT_EQ(post("grant_type=password&username=ci-bot&password=wrong&service=test-svc").status, 401);
  EXPECT_EQ(post("grant_type=refresh_token&refresh_token=" + j["access_token"].get<std::string>()).status, 401);
  EXPECT_EQ(post("grant_type=client_credentials").status, 400);
}

}  // namespace
}  // namespace ocirelay::http
