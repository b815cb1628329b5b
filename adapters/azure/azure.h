// Azure Container Registry credentials from Microsoft Entra ID: a service principal
// (client secret) or a managed identity, exchanged for an ACR refresh token.
#pragma once

#include <chrono>
#include <memory>
#include <string>

#include "adapters/credentials.h"

namespace ocirelay::adapters {

struct AzureOptions {
  std::string tenant_id;  // required for a service principal; optional for managed identity
  // Service principal: its application (client) id. Managed identity: selects a
  // user-assigned identity; empty: the system-assigned one.
  std::string client_id;
  // File holding the service principal's client secret (re-read on every exchange, so a
  // rotated secret is picked up). Empty: $AZURE_CLIENT_SECRET. When neither is set the
  // source uses managed identity.
  std::string client_secret_file;
  // Entra ID authority. Empty: $AZURE_AUTHORITY_HOST, else https://login.microsoftonline.com.
  std::string authority_host;
  // The Entra token's audience (scope for client credentials; managed identity asks for
  // the same resource without "/.default").
  std::string scope = "https://containerregistry.azure.net/.default";
  std::string ca_file;  // extra CA bundle for Entra ID and the registry; empty: system store
  std::chrono::milliseconds request_timeout{30000};
};

// Credentials for the ACR at `registry_url` ("https://myreg.azurecr.io"): an Entra ID
// access token (client credentials grant, or managed identity through IMDS — or App
// Service's IDENTITY_ENDPOINT/IDENTITY_HEADER, or $AZURE_POD_IDENTITY_AUTHORITY_HOST)
// is exchanged at the registry's /oauth2/exchange (on the host of its /v2/ challenge
// realm, as az acr login does) for an ACR refresh token, returned as an identity token
// with username 00000000-0000-0000-0000-000000000000. It is renewed before the refresh
// token's exp (about 3 hours). The ACR admin user needs no source: use fixed credentials.
// describe(): "azure (service principal <client_id>)", "azure (managed identity)",
// "azure (managed identity <client_id>)".
std::shared_ptr<CredentialSource> acr_credentials(std::string registry_url, AzureOptions options);

}  // namespace ocirelay::adapters
