// Parsing of WWW-Authenticate challenges (RFC 7235) as registries send them, and the
// realm host check that keeps credentials on the registry's own domain.
#pragma once

#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace ocirelay::adapters {

struct AuthChallenge {
  std::string scheme;                        // lower case: "bearer", "basic"
  std::map<std::string, std::string> params; // keys lower case: realm, service, scope
  std::string param(std::string_view key) const;
};

// Parses one header value. A value may carry several challenges
// ("Basic realm=x, Bearer realm=y,service=z"); all are returned in order.
std::vector<AuthChallenge> parse_www_authenticate(std::string_view header);

// Picks the challenge to answer among every WWW-Authenticate value of a response:
// Bearer first (the token flow), then Basic. nullopt when neither is offered.
std::optional<AuthChallenge> pick_challenge(const std::vector<std::string>& headers);

// Host part of "scheme://[user@]host[:port]/path" in lower case, brackets removed from
// IPv6 literals; empty when the URL has no authority.
std::string url_host(std::string_view url);

// True when a token realm on `realm_host` may receive the registry's credentials: the
// same host, both loopback, or the same registrable domain by the Public Suffix List
// (registry-1.docker.io and auth.docker.io; not reg.example.co.uk and attacker.co.uk, nor
// two buckets under s3.amazonaws.com). IP literals must match exactly.
// `also_allowed` lists realm hosts the configuration trusts beyond that (exact matches).
bool realm_host_allowed(std::string_view registry_host, std::string_view realm_host,
                        const std::vector<std::string>& also_allowed = {});

}  // namespace ocirelay::adapters
