// ScopedAwsEnv: a test's AWS environment. Clears every variable the AWS credential chain
// and endpoint resolution read (so the host's own AWS setup never leaks into a test),
// points HOME at a temp dir (no ~/.aws of the host), applies the test's values, and
// restores everything on destruction.
#pragma once

#include <string>

#include "tests/support/files.h"
#include "tests/support/scoped_env.h"

namespace ocirelay::testing {

class ScopedAwsEnv {
 public:
  ScopedAwsEnv() {
    for (const char* n :
         {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
          "AWS_DEFAULT_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_CONFIG_FILE",
          "AWS_SHARED_CREDENTIALS_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
          "AWS_ROLE_SESSION_NAME", "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
          "AWS_CONTAINER_CREDENTIALS_FULL_URI", "AWS_CONTAINER_AUTHORIZATION_TOKEN",
          "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE", "AWS_EC2_METADATA_SERVICE_ENDPOINT",
          "AWS_EC2_METADATA_DISABLED", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_ECR",
          "AWS_ENDPOINT_URL_STS", "AWS_ENDPOINT_URL_SECRETS_MANAGER",
          "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "HOME"}) {
      unset(n);
    }
    set("HOME", home_.path().string());
    // No test may reach a real instance metadata service by accident.
    set("AWS_EC2_METADATA_DISABLED", "true");
  }
  ScopedAwsEnv(const ScopedAwsEnv&) = delete;
  ScopedAwsEnv& operator=(const ScopedAwsEnv&) = delete;

  void set(const std::string& name, const std::string& value) { env_.set(name, value); }
  void unset(const std::string& name) { env_.unset(name); }
  const TempDir& home() const { return home_; }

 private:
  TempDir home_;
  ScopedEnv env_;  // declared after home_: restores HOME before the dir goes away
};

}  // namespace ocirelay::testing
