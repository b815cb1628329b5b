// Google Cloud for registries: Application Default Credentials for Artifact Registry and
// GCR (username "oauth2accesstoken", password = an OAuth2 access token), Secret Manager as
// a credential source for any registry, and creating Artifact Registry repositories before
// a push. Everything here blocks on HTTP: call from worker threads, never an I/O thread.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "adapters/credentials.h"
#include "oci/result.h"

namespace ocirelay::adapters {

// How Google APIs are reached; defaults are Google's public endpoints.
struct GoogleTransport {
  std::string ca_file;  // extra CA bundle; empty: system store
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds request_timeout{30000};
};

// YAML `auth: google: {credentials_file: ...}`.
struct GoogleAuthOptions {
  // A service_account or authorized_user JSON file. Empty: Application Default
  // Credentials in Google's order: $GOOGLE_APPLICATION_CREDENTIALS, then gcloud's
  // application_default_credentials.json ($CLOUDSDK_CONFIG, else ~/.config/gcloud), then
  // the GCE/GKE metadata server ($GCE_METADATA_HOST, else metadata.google.internal).
  std::string credentials_file;
  GoogleTransport transport;
  ExpiringCredentialSource::Now now;  // tests move time; default system_clock
};

// Credentials for Artifact Registry / GCR: {"oauth2accesstoken", <access token>} with
// cloud-platform scope, cached until shortly before the token expires. The credential
// file is chosen and parsed here: an unreadable or unusable file is invalid_argument
// (naming the file, never its secrets). describe(): "google adc (service account
// x@p.iam.gserviceaccount.com)", "google adc (authorized user)", "google adc (metadata
// server)". The password doubles as the bearer token for the Google APIs below.
Result<std::shared_ptr<CredentialSource>> google_credentials(const GoogleAuthOptions& options);

// YAML `auth: secret: {google_secret_manager: projects/P/secrets/S/versions/V, username: u}`.
struct GoogleSecretManagerOptions {
  // "projects/P/secrets/S/versions/V"; V is a number or "latest".
  std::string secret_version;
  // Used when the secret is a plain password. A secret holding JSON
  // {"username": ..., "password": ...} brings its own username.
  std::string username;
  // API base URL. Google's client libraries have no standard environment override for
  // it, so tests (and private endpoints, e.g. a PSC address) set it here.
  std::string endpoint = "https://secretmanager.googleapis.com";
  // Read the secret again after this long, so a rotated password is picked up even
  // before the registry refuses the old one (a refusal re-reads it at once).
  std::chrono::seconds reread_after{3600};
  GoogleTransport transport;
  ExpiringCredentialSource::Now now;
};

// Registry credentials read from Secret Manager (AccessSecretVersion) with `google`'s
// access token (usually google_credentials()). The payload's CRC32C is verified when
// Google sends one. invalid_argument when secret_version is malformed.
Result<std::shared_ptr<CredentialSource>> google_secret_manager_credentials(
    GoogleSecretManagerOptions options, std::shared_ptr<CredentialSource> google);

// YAML prepare step `create_repository: {kms_key: ...}` on a Google destination.
struct ArtifactRegistryCreateOptions {
  // "projects/P/locations/L/keyRings/K/cryptoKeys/C" (CMEK); empty: Google-managed key.
  std::string kms_key;
  std::string endpoint = "https://artifactregistry.googleapis.com";  // API base URL
  // The create is a long-running operation: polled this often, for at most this long.
  std::chrono::milliseconds poll_interval{1000};
  std::chrono::milliseconds operation_timeout{120000};
  GoogleTransport transport;
};

// An Artifact Registry Docker repository, from "L-docker.pkg.dev/P/R[/image...]".
struct ArtifactRegistryRepository {
  std::string location;  // "us-central1", "europe" (multi-region)
  std::string project;
  std::string repository;
};

// The repository `destination` ("host/path", no scheme) lives in. invalid_argument when
// it is not an Artifact Registry Docker path.
Result<ArtifactRegistryRepository> parse_artifact_registry_destination(
    std::string_view destination);
// gcr.io and its regional hosts (us.gcr.io, eu.gcr.io, asia.gcr.io, ...).
bool is_gcr_host(std::string_view host);

// Makes sure the repository `destination` lives in exists: creates it (format DOCKER,
// kms_key when given) and waits for the operation; an existing repository (409
// ALREADY_EXISTS) is success, so the step is idempotent. gcr.io destinations need no
// repository: success without a call. `google` supplies the bearer token.
Status artifact_registry_create_repository(std::string_view destination, CredentialSource& google,
                                           const ArtifactRegistryCreateOptions& options);

}  // namespace ocirelay::adapters
