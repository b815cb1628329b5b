// Registry kinds inferred from hosts, as users write them in `url:`.
#include "adapters/registry_kind.h"

#include <gtest/gtest.h>

namespace ocirelay::adapters {
namespace {

TEST(RegistryKindTest, InferredFromTheHost) {
  EXPECT_EQ(infer_registry_kind("123456789012.dkr.ecr.us-east-1.amazonaws.com"), RegistryKind::ecr);
  EXPECT_EQ(infer_registry_kind("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com"), RegistryKind::ecr);
  EXPECT_EQ(infer_registry_kind("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"), RegistryKind::ecr);
  EXPECT_EQ(infer_registry_kind("europe-west1-docker.pkg.dev"), RegistryKind::artifact_registry);
  EXPECT_EQ(infer_registry_kind("gcr.io"), RegistryKind::gcr);
  EXPECT_EQ(infer_registry_kind("eu.gcr.io"), RegistryKind::gcr);
  EXPECT_EQ(infer_registry_kind("myreg.azurecr.io"), RegistryKind::acr);
  EXPECT_EQ(infer_registry_kind("fra.ocir.io"), RegistryKind::ocir);
  EXPECT_EQ(infer_registry_kind("ghcr.io"), RegistryKind::ghcr);
  EXPECT_EQ(infer_registry_kind("quay.io"), RegistryKind::quay);
  EXPECT_EQ(infer_registry_kind("registry-1.docker.io"), RegistryKind::docker_hub);
  EXPECT_EQ(infer_registry_kind("registry.local:5000"), RegistryKind::generic);
}

TEST(RegistryKindTest, LookalikeHostsStayGeneric) {
  // A suffix match must be a whole label: these are not the cloud registries.
  EXPECT_EQ(infer_registry_kind("evilgcr.io"), RegistryKind::generic);
  EXPECT_EQ(infer_registry_kind("notazurecr.io"), RegistryKind::generic);
  EXPECT_EQ(infer_registry_kind("x.dkr.ecr.us-east-1.amazonaws.com.evil.io"), RegistryKind::generic);
  EXPECT_EQ(infer_registry_kind("ghcr.io.evil.io"), RegistryKind::generic);
}

TEST(RegistryKindTest, NamesRoundTrip) {
  for (auto k : {RegistryKind::generic, RegistryKind::ecr, RegistryKind::harbor, RegistryKind::acr})
    EXPECT_EQ(parse_registry_kind(kind_name(k)), k);
  EXPECT_FALSE(parse_registry_kind("dockerhub"));
}

}  // namespace
}  // namespace ocirelay::adapters
