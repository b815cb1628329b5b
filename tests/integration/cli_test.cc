// The ocirelay executable's commands as an operator runs them.
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>

#include "tests/integration/fixture.h"

namespace ocirelay::testing {
namespace {

TEST(CliTest, BadConfigStopsStartupNamingKeyAndLine) {
  TempDir tmp;
  write_file(tmp / "c.yaml", "listen: 127.0.0.1:0\nupstreams:\n  - name: a.io\n    url: https://a.io\n    tag_ttl: 5x\n");
  auto r = run_command({OCIRELAY_BINARY, "serve", "--config", (tmp / "c.yaml").string()}, 30s);
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("c.yaml:5: upstreams[0].tag_ttl: invalid duration '5x'"), std::string::npos) << r.err;
}

TEST(CliTest, HelpAndVersion) {
  auto h = run_command({OCIRELAY_BINARY, "--help"}, 30s);
  EXPECT_EQ(h.exit_code, 0);
  for (const char* cmd : {"serve", "fsck", "gc", "warm"}) EXPECT_NE(h.out.find(cmd), std::string::npos) << cmd;
  auto v = run_command({OCIRELAY_BINARY, "--version"}, 30s);
  EXPECT_EQ(v.exit_code, 0);
  EXPECT_NE(v.out.find("ocirelay "), std::string::npos);
}

using CommandTest = MirrorTest;

// On a terminal warm draws a bar per blob that it redraws in place; the plain-line mode is
// what the test above sees through a pipe. `script` gives the command a pseudo-terminal.
TEST_F(CommandTest, WarmDrawsProgressBarsOnATerminal) {
  if (!require_programs({"script"})) return;  // util-linux
  push_image("team/app", "1.0", 1, 512 * 1024);
  OcirelayProcess relay(tmp / "ocirelay", kUpstream, registry.url());
  ASSERT_TRUE(relay.start());  // writes the config
  relay.stop();
  std::string cmd = std::string(OCIRELAY_BINARY) + " warm " + kUpstream + "/team/app:1.0 --config " +
                    relay.config_file().string();
  auto r = run_command({"script", "-qec", cmd, "/dev/null"}, 120s);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  // A finished bar, drawn over the line it started on (carriage return + erase line).
  EXPECT_NE(r.out.find("\r\033[K"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("[" + std::string(30, '#') + "] 512.0 KiB / 512.0 KiB"), std::string::npos)
      << r.out;
}

TEST_F(CommandTest, WarmFillsTheStoreWithoutServing) {
  auto img = push_image("team/app", "1.0", 2, 64 * 1024);
  OcirelayProcess relay(tmp / "ocirelay", kUpstream, registry.url());
  ASSERT_TRUE(relay.start());  // writes the config
  relay.stop();
  auto r = relay.run({"warm", std::string(kUpstream) + "/team/app:1.0"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto copy = skopeo_copy("oci:" + relay.store_dir().string() + ":" + kUpstream + "/team/app:1.0",
                          "dir:" + (tmp / "out").string());
  ASSERT_EQ(copy.exit_code, 0) << copy.err;
  expect_dir_matches(tmp / "out", img);

  auto bad = relay.run({"warm", "elsewhere.example/team/app:1.0", std::string(kUpstream) + "/team/none:1"});
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.err.find("elsewhere.example"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("team/none"), std::string::npos) << bad.err;

  auto gc = relay.run({"gc"});
  EXPECT_EQ(gc.exit_code, 0) << gc.err;
  auto fsck = relay.run({"fsck"});
  EXPECT_EQ(fsck.exit_code, 0) << fsck.out << fsck.err;
}

TEST_F(CommandTest, FsckReportsACorruptBlob) {
  auto img = push_image("team/app", "1.0", 1, 64 * 1024);
  OcirelayProcess relay(tmp / "ocirelay", kUpstream, registry.url());
  ASSERT_TRUE(relay.start());
  relay.stop();
  ASSERT_EQ(relay.run({"warm", std::string(kUpstream) + "/team/app:1.0"}).exit_code, 0);
  write_file(relay.store_dir() / "blobs/sha256" / img.blobs[1].substr(7), "garbage");
  auto fsck = relay.run({"fsck"});
  EXPECT_EQ(fsck.exit_code, 1);
  EXPECT_NE(fsck.out.find(img.blobs[1]), std::string::npos) << fsck.out;
  auto repair = relay.run({"fsck", "--repair"});
  EXPECT_EQ(repair.exit_code, 0) << repair.out << repair.err;
  EXPECT_EQ(relay.run({"fsck"}).exit_code, 0);
}

TEST_F(CommandTest, ServeNotifiesSystemdWhenReadyAndStopsOnSigterm) {
  // A datagram socket standing in for systemd's NOTIFY_SOCKET.
  fs::path sock = tmp / "notify.sock";
  int fd = ::socket(AF_UNIX, SOCK_DGRAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, sock.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);

  OcirelayProcess relay(tmp / "ocirelay", kUpstream, registry.url());
  ASSERT_TRUE(relay.start());  // writes the config
  relay.stop();
  Process serve;
  ASSERT_TRUE(serve.start({OCIRELAY_BINARY, "serve", "--config", relay.config_file().string(),
                           "--listen", "127.0.0.1:0", "--log-format", "json"},
                          tmp / "serve.out", tmp / "serve.err", {{"NOTIFY_SOCKET", sock.string()}}));
  std::string got;
  wait_until(
      [&] {
        char buf[256];
        ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) got.append(buf, static_cast<std::size_t>(n));
        return got.find("READY=1") != std::string::npos || !serve.running();
      },
      30s);
  ::close(fd);
  EXPECT_NE(got.find("READY=1"), std::string::npos) << read_file(tmp / "serve.err");
  auto port = wait_for_listening_port(serve, tmp / "serve.err", 0, "127.0.0.1");
  ASSERT_TRUE(port) << read_file(tmp / "serve.err");
  EXPECT_EQ(http_request(*port, "GET", "/v2/").status, 200) << "the logged port is the bound one";
  int status = serve.stop(10s);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "SIGTERM must end serve cleanly";
  // JSON log lines: one object per line with ts, level, msg.
  std::string log = read_file(tmp / "serve.err");
  EXPECT_NE(log.find("{\"ts\":\""), std::string::npos) << log;
  EXPECT_NE(log.find("\"msg\":\"listening on 127.0.0.1:" + std::to_string(*port) + "\""),
            std::string::npos)
      << log;
}

TEST_F(CommandTest, WarmWithPlatformFetchesOnlyThatChild) {
  auto amd = images.add_image("", {random_bytes(30000, 41)}, {"linux", "amd64"});
  auto arm = images.add_image("", {random_bytes(30000, 42)}, {"linux", "arm64"});
  auto idx = images.add_index("multi", {{amd, {"linux", "amd64"}}, {arm, {"linux", "arm64"}}});
  ASSERT_TRUE(images.push(registry.host(), "team/multi", "multi"));
  OcirelayProcess relay(tmp / "ocirelay", kUpstream, registry.url());
  ASSERT_TRUE(relay.start());
  relay.stop();
  write_file(tmp / "list.txt", "# images to warm\n" + std::string(kUpstream) + "/team/multi:multi\n");
  auto r = relay.run({"warm", "--file", (tmp / "list.txt").string(), "--platform", "linux/arm64"});
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  auto blobs = relay.store_dir() / "blobs/sha256";
  EXPECT_TRUE(fs::exists(blobs / idx.digest.substr(7)));
  for (const auto& b : arm.blobs) EXPECT_TRUE(fs::exists(blobs / b.substr(7))) << "arm64 " << b;
  for (const auto& b : amd.blobs) EXPECT_FALSE(fs::exists(blobs / b.substr(7))) << "amd64 " << b;

  auto none = relay.run({"warm", std::string(kUpstream) + "/team/multi:multi", "--platform", "linux/s390x"});
  EXPECT_EQ(none.exit_code, 1);
  EXPECT_NE(none.err.find("linux/s390x"), std::string::npos) << none.err;
}

}  // namespace
}  // namespace ocirelay::testing
