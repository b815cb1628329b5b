// Each vendor's webhook payload, as its documentation shows it, read into the images it
// names; and what is not a change a rule could copy left out.
#include "api/webhook_events.h"

#include <gtest/gtest.h>

#include "oci/encoding.h"

namespace ocirelay::api {
namespace {

using Action = RegistryEvent::Action;

std::vector<RegistryEvent> events(WebhookKind kind, const std::string& body, std::string_view github_event = {}) {
  auto r = parse_webhook(kind, body, github_event);
  EXPECT_TRUE(r.ok()) << r.error().to_string();
  return r ? *r : std::vector<RegistryEvent>{};
}

// EventBridge's "ECR Image Action" (AWS docs, ECR events and EventBridge).
constexpr const char* kEcrPush = R"({
  "version": "0", "id": "13cde686-328b-6117-af20-0e5566167482", "detail-type": "ECR Image Action",
  "source": "aws.ecr", "account": "123456789012", "time": "2019-11-16T01:54:34Z", "region": "us-west-2",
  "resources": [],
  "detail": {"result": "SUCCESS", "repository-name": "my-repository-name",
             "image-digest": "sha256:7f5b2640fe6fb4f46592dfd3410c4a79dac4f89e4782432e0378abcd1234abcd",
             "action-type": "PUSH", "image-tag": "latest"}})";

TEST(WebhookEvents, EcrImageActionPushAndDeleteAndTheCompactForm) {
  auto push = events(WebhookKind::ecr, kEcrPush);
  ASSERT_EQ(push.size(), 1u);
  EXPECT_EQ(push[0].action, Action::push);
  EXPECT_EQ(push[0].repository, "my-repository-name");
  EXPECT_EQ(push[0].tag, "latest");
  EXPECT_EQ(push[0].id, "13cde686-328b-6117-af20-0e5566167482");

  auto del = events(WebhookKind::ecr, R"({"version":"0","id":"e1","detail-type":"ECR Image Action","source":"aws.ecr",
    "detail":{"result":"SUCCESS","repository-name":"team/app","image-digest":"sha256:aa","action-type":"DELETE","image-tag":"1.0"}})");
  ASSERT_EQ(del.size(), 1u);
  EXPECT_EQ(del[0].action, Action::remove);
  EXPECT_EQ(del[0].tag, "1.0");

  auto compact = events(WebhookKind::ecr,
                        R"({"account":"123456789012","region":"us-east-1","detail":{"action-type":"PUSH","repository-name":"team/app","image-tag":"v2"}})");
  ASSERT_EQ(compact.size(), 1u);
  EXPECT_EQ(compact[0].repository, "team/app");
  EXPECT_EQ(compact[0].tag, "v2");

  // A failed action, another ECR event type, a push by digest: nothing to copy.
  EXPECT_TRUE(events(WebhookKind::ecr, R"({"detail-type":"ECR Image Action","detail":{"result":"FAILURE","action-type":"PUSH","repository-name":"a","image-tag":"1"}})").empty());
  EXPECT_TRUE(events(WebhookKind::ecr, R"({"detail-type":"ECR Image Scan","detail":{"repository-name":"a"}})").empty());
  EXPECT_TRUE(events(WebhookKind::ecr, R"({"detail":{"action-type":"PUSH","repository-name":"a","image-digest":"sha256:aa"}})").empty());
  EXPECT_FALSE(parse_webhook(WebhookKind::ecr, R"({"detail":{"action-type":"PULL","repository-name":"a"}})").ok());
  EXPECT_FALSE(parse_webhook(WebhookKind::ecr, R"({"account":"1"})").ok());
}

TEST(WebhookEvents, ArtifactRegistryThroughAPubSubPush) {
  const std::string data = oci::base64_encode(
      R"({"action":"INSERT","digest":"us-east1-docker.pkg.dev/my-project/my-repo/hello-world@sha256:6ec128e26cd5","tag":"us-east1-docker.pkg.dev/my-project/my-repo/hello-world:1.1"})");
  auto e = events(WebhookKind::artifact_registry,
                  R"({"message":{"data":")" + data + R"(","messageId":"2070443601311540","publishTime":"2021-02-26T19:13:55.749Z"},"subscription":"projects/myproject/subscriptions/mysubscription"})");
  ASSERT_EQ(e.size(), 1u);
  EXPECT_EQ(e[0].action, Action::push);
  EXPECT_EQ(e[0].repository, "my-project/my-repo/hello-world");
  EXPECT_EQ(e[0].tag, "1.1");
  EXPECT_EQ(e[0].digest, "sha256:6ec128e26cd5");
  EXPECT_EQ(e[0].id, "2070443601311540");

  // A delete by digest: the repository as a whole.
  const std::string gone =
      oci::base64_encode(R"({"action":"DELETE","digest":"us-docker.pkg.dev/p/r/img@sha256:6ec128e26cd5"})");
  auto d = events(WebhookKind::artifact_registry, R"({"message":{"data":")" + gone + R"(","messageId":"9"}})");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].action, Action::remove);
  EXPECT_EQ(d[0].repository, "p/r/img");
  EXPECT_EQ(d[0].tag, "");
  EXPECT_FALSE(parse_webhook(WebhookKind::artifact_registry, R"({"message":{"data":"%%%"}})").ok());
}

TEST(WebhookEvents, DistributionNotificationsKeepTaggedManifestPushesAndDeletes) {
  // The envelope distribution sends (docs/notifications.md): a blob push and a manifest
  // push of the same image, then a delete; pulls are ignored.
  auto e = events(WebhookKind::distribution, R"({"events":[
    {"id":"asdf-asdf-asdf-asdf-0","timestamp":"2006-01-02T15:04:05Z","action":"push",
     "target":{"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","size":2,"digest":"sha256:fea8895f450959fa676bcc1df0611ea93823a735a01205fd8622846041d0c7cf","length":2,"repository":"library/test","url":"http://example.com/v2/library/test/blobs/sha256:fea8"},
     "request":{"id":"asdfasdf","addr":"client.local","host":"registrycluster.local","method":"PUT","useragent":"test/0.1"},"actor":{"name":"test-actor"},"source":{"addr":"hostname.local:port"}},
    {"id":"asdf-asdf-asdf-asdf-1","timestamp":"2006-01-02T15:04:05Z","action":"push",
     "target":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":1,"digest":"sha256:0123456789abcdef0","length":1,"repository":"library/test","url":"http://example.com/v2/library/test/manifests/latest","tag":"latest"}},
    {"id":"asdf-asdf-asdf-asdf-2","action":"pull","target":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","repository":"library/test","tag":"latest"}},
    {"id":"asdf-asdf-asdf-asdf-3","action":"delete","target":{"digest":"sha256:0123456789abcdef0","repository":"library/test"}}
  ]})");
  ASSERT_EQ(e.size(), 2u);
  EXPECT_EQ(e[0].action, Action::push);
  EXPECT_EQ(e[0].repository, "library/test");
  EXPECT_EQ(e[0].tag, "latest");
  EXPECT_EQ(e[0].id, "asdf-asdf-asdf-asdf-1");
  EXPECT_EQ(e[1].action, Action::remove);
  EXPECT_EQ(e[1].tag, "");
  EXPECT_FALSE(parse_webhook(WebhookKind::distribution, R"({"event":[]})").ok());
}

TEST(WebhookEvents, HarborAcrDockerHubAndGithub) {
  // Harbor (its webhook docs): PUSH_ARTIFACT with its resources.
  auto h = events(WebhookKind::harbor, R"({"type":"PUSH_ARTIFACT","occur_at":1680501893,"operator":"admin",
    "event_data":{"resources":[{"digest":"sha256:954b378c375d852eb3c63ab88978f640b4348b01c1b3456a024a81536dafbbf4","tag":"1.0","resource_url":"harbor.example.com/library/nginx:1.0"}],
    "repository":{"date_created":1680501893,"name":"nginx","namespace":"library","repo_full_name":"library/nginx","repo_type":"private"}}})");
  ASSERT_EQ(h.size(), 1u);
  EXPECT_EQ(h[0].repository, "library/nginx");
  EXPECT_EQ(h[0].tag, "1.0");
  EXPECT_TRUE(events(WebhookKind::harbor, R"({"type":"PULL_ARTIFACT","event_data":{"repository":{"repo_full_name":"a/b"}}})").empty());
  auto hd = events(WebhookKind::harbor, R"({"type":"DELETE_ARTIFACT","event_data":{"resources":[{"digest":"sha256:95","tag":"1.0"}],"repository":{"repo_full_name":"library/nginx"}}})");
  ASSERT_EQ(hd.size(), 1u);
  EXPECT_EQ(hd[0].action, Action::remove);

  // ACR (its webhook reference): push and delete.
  auto a = events(WebhookKind::acr, R"({"id":"cb8c3971-9adc-488b-xxxx-43cbb4974ff5","timestamp":"2017-11-17T16:52:01.343145347Z","action":"push",
    "target":{"mediaType":"application/vnd.docker.distribution.manifest.v2+json","size":524,"digest":"sha256:80f0d5c8786bb9e621a45ece0db56d11cdc624ad20da9fe62e9d25490f331d7d","length":524,"repository":"hello-world","tag":"v1"},
    "request":{"id":"3cbb6949-7549-4fa1-xxxx-a6d5451dffc7","host":"myregistry.azurecr.io","method":"PUT","useragent":"docker/17.09.0-ce"}})");
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].repository, "hello-world");
  EXPECT_EQ(a[0].tag, "v1");
  EXPECT_EQ(a[0].id, "cb8c3971-9adc-488b-xxxx-43cbb4974ff5");

  // Docker Hub (its webhook docs).
  auto d = events(WebhookKind::dockerhub, R"({"callback_url":"https://registry.hub.docker.com/u/svendowideit/testhook/hook/2141b5bi5i5b02bec211i4eeih0242eg11000a/",
    "push_data":{"pushed_at":1417566161,"pusher":"trustedbuilder","tag":"latest"},
    "repository":{"comment_count":0,"date_created":1417494799,"description":"","dockerfile":"","is_official":false,"is_private":true,"is_trusted":true,
                  "name":"testhook","namespace":"svendowideit","owner":"svendowideit","repo_name":"svendowideit/testhook","repo_url":"https://registry.hub.docker.com/u/svendowideit/testhook/","star_count":0,"status":"Active"}})");
  ASSERT_EQ(d.size(), 1u);
  EXPECT_EQ(d[0].repository, "svendowideit/testhook");
  EXPECT_EQ(d[0].tag, "latest");

  // GitHub: a container package published (package event), and a ping.
  auto g = events(WebhookKind::github, R"({"action":"published","package":{"id":1,"name":"Hello-World","namespace":"Octo-Org","package_type":"CONTAINER",
    "owner":{"login":"Octo-Org"},"package_version":{"id":2,"version":"sha256:3da8","name":"sha256:3da8",
    "container_metadata":{"tag":{"name":"v1.2","digest":"sha256:3da8"}}}}})", "package");
  ASSERT_EQ(g.size(), 1u);
  EXPECT_EQ(g[0].repository, "octo-org/hello-world");
  EXPECT_EQ(g[0].tag, "v1.2");
  EXPECT_TRUE(events(WebhookKind::github, R"({"zen":"Keep it logically awesome.","hook_id":1})", "ping").empty());
  EXPECT_TRUE(events(WebhookKind::github, R"({"action":"published","package":{"name":"x","package_type":"npm","owner":{"login":"o"}}})", "package").empty());
}

TEST(WebhookEvents, HostileBodiesAreErrorsOrNothingNeverAThrow) {
  for (const char* body : {"", "null", "[]", "{", R"({"events":"x"})", R"({"events":[1,2,{"target":7}]})",
                           R"({"detail":{"action-type":"PUSH","repository-name":"../../etc","image-tag":"x"}})",
                           R"({"detail":{"action-type":"PUSH","repository-name":"a","image-tag":"bad tag!"}})"}) {
    for (auto kind : {WebhookKind::ecr, WebhookKind::artifact_registry, WebhookKind::distribution, WebhookKind::harbor,
                      WebhookKind::acr, WebhookKind::dockerhub, WebhookKind::github}) {
      auto r = parse_webhook(kind, body, "package");
      if (r) {
        for (const auto& e : *r) EXPECT_FALSE(e.repository.empty()) << body;
      }
    }
  }
  // Names a registry could not hold never come out.
  EXPECT_TRUE(events(WebhookKind::ecr, R"({"detail":{"action-type":"PUSH","repository-name":"../../etc","image-tag":"x"}})").empty());
}

}  // namespace
}  // namespace ocirelay::api
