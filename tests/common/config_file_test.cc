#include "server/common/config_file.h"

#include <filesystem>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace qrag::cli {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

EnvLookup FakeEnv(std::map<std::string, std::string> vars) {
  return [vars = std::move(vars)](absl::string_view name) -> std::optional<std::string> {
    auto it = vars.find(std::string(name));
    if (it == vars.end()) return std::nullopt;
    return it->second;
  };
}

std::string WriteTemp(const std::string& name, const std::string& text) {
  const std::string path = (std::filesystem::path(::testing::TempDir()) / name).string();
  std::ofstream(path) << text;
  return path;
}

TEST(ConfigExpandEnv, PlainTextUnchanged) {
  EXPECT_EQ(*ExpandEnv("127.0.0.1:50051", FakeEnv({})), "127.0.0.1:50051");
}

TEST(ConfigExpandEnv, VariablesDefaultsAndDollarEscape) {
  const EnvLookup env = FakeEnv({{"DIR", "/models"}, {"EMPTY", ""}});
  EXPECT_EQ(*ExpandEnv("${DIR}/a.bin", env), "/models/a.bin");
  EXPECT_EQ(*ExpandEnv("${MISSING:-x}${DIR:-y}", env), "x/models");
  EXPECT_EQ(*ExpandEnv("${EMPTY:-fallback}", env), "fallback");  // empty counts as unset with a default
  EXPECT_EQ(*ExpandEnv("${EMPTY}", env), "");
  EXPECT_EQ(*ExpandEnv("cost $$5", env), "cost $5");
}

TEST(ConfigExpandEnv, UnsetVariableNamesItAndTheFix) {
  absl::StatusOr<std::string> r = ExpandEnv("${QRAG_NOPE}", FakeEnv({}));
  ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(r.status().message(), HasSubstr("QRAG_NOPE is not set"));
  EXPECT_THAT(r.status().message(), HasSubstr("${QRAG_NOPE:-default}"));
}

TEST(ConfigExpandEnv, MalformedReferences) {
  for (const char* bad : {"$HOME", "${", "${A", "${}", "${1A}", "${A-B}", "trailing $"}) {
    EXPECT_EQ(ExpandEnv(bad, FakeEnv({{"A", "1"}})).status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(ConfigFlagsFromYaml, MappingBecomesFlagsInOrder) {
  const char* yaml =
      "model: /m/stories260K.bin\n"
      "listen: 0.0.0.0:50051\n"
      "max-running: 32\n"
      "drain-seconds: 2.5\n"
      "stop: [\"a\", 'b c']\n"
      "model-name: ${NAME:-stories}\n";
  absl::StatusOr<std::vector<std::string>> flags = ConfigFlagsFromYaml(yaml, "qrag.yaml", FakeEnv({}));
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_THAT(*flags, ElementsAre("--model=/m/stories260K.bin", "--listen=0.0.0.0:50051", "--max-running=32",
                                  "--drain-seconds=2.5", "--stop=a", "--stop=b c", "--model-name=stories"));
}

TEST(ConfigFlagsFromYaml, EmptyFileAndCommentsConfigureNothing) {
  EXPECT_THAT(*ConfigFlagsFromYaml("", "f", FakeEnv({})), IsEmpty());
  EXPECT_THAT(*ConfigFlagsFromYaml("# only a comment\n", "f", FakeEnv({})), IsEmpty());
}

struct BadConfig {
  const char* yaml;
  const char* message;
};

TEST(ConfigFlagsFromYaml, ErrorsNameFileLineKeyAndFix) {
  const BadConfig cases[] = {
      {"model: [unclosed\n", "not valid YAML"},
      {"- model\n- listen\n", "must be a mapping"},
      {"just text\n", "must be a mapping"},
      {"--model: x\n", "not a flag name"},
      {"Model: x\n", "not a flag name"},
      {"model:\n", "'model': has no value"},
      {"listen: {host: a}\n", "not a mapping"},
      {"stop: [[a]]\n", "list elements must be plain values"},
      {"config: other.yaml\n", "do not nest"},
      {"help: 1\n", "not a setting"},
      {"model: a\nmodel: b\n", "given twice"},
      {"model: ${UNSET_VAR}\n", "UNSET_VAR is not set"},
  };
  for (const BadConfig& c : cases) {
    absl::StatusOr<std::vector<std::string>> r = ConfigFlagsFromYaml(c.yaml, "cfg.yaml", FakeEnv({}));
    ASSERT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument) << c.yaml;
    EXPECT_THAT(r.status().message(), HasSubstr("cfg.yaml")) << c.yaml;
    EXPECT_THAT(r.status().message(), HasSubstr(c.message)) << c.yaml;
  }
  // The line of the offending key is named (1-based).
  absl::StatusOr<std::vector<std::string>> r = ConfigFlagsFromYaml("model: a\n\nBad: b\n", "cfg.yaml", FakeEnv({}));
  EXPECT_THAT(r.status().message(), HasSubstr("cfg.yaml line 3, 'Bad'"));
}

TEST(ExpandConfigFlags, FileFlagsComeFirstSoTheCommandLineWins) {
  const std::string path = WriteTemp("server.yaml", "listen: 0.0.0.0:1\nquant: fp8\n");
  absl::StatusOr<std::vector<std::string>> argv = ExpandConfigFlags(
      {"qrag-server", "--listen", "127.0.0.1:2", "--config", path, "--model=m.bin"}, FakeEnv({}));
  ASSERT_TRUE(argv.ok()) << argv.status();
  EXPECT_THAT(*argv, ElementsAre("qrag-server", "--listen=0.0.0.0:1", "--quant=fp8", "--listen", "127.0.0.1:2",
                                 "--model=m.bin"));
  absl::StatusOr<std::vector<std::string>> eq_form =
      ExpandConfigFlags({"qrag-server", "--config=" + path}, FakeEnv({}));
  EXPECT_THAT(*eq_form, ElementsAre("qrag-server", "--listen=0.0.0.0:1", "--quant=fp8"));
}

TEST(ExpandConfigFlags, NoConfigLeavesArgvAlone) {
  EXPECT_THAT(*ExpandConfigFlags({"p", "--model", "x"}, FakeEnv({})), ElementsAre("p", "--model", "x"));
}

TEST(ExpandConfigFlags, MissingValueMissingFileAndDirectory) {
  EXPECT_EQ(ExpandConfigFlags({"p", "--config"}, FakeEnv({})).status().code(), absl::StatusCode::kInvalidArgument);
  absl::StatusOr<std::vector<std::string>> missing =
      ExpandConfigFlags({"p", "--config", "/nonexistent/qrag.yaml"}, FakeEnv({}));
  EXPECT_EQ(missing.status().code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(missing.status().message(), HasSubstr("/nonexistent/qrag.yaml does not exist"));
  absl::StatusOr<std::vector<std::string>> dir = ExpandConfigFlags({"p", "--config", ::testing::TempDir()},
                                                                   FakeEnv({}));
  EXPECT_EQ(dir.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(dir.status().message(), HasSubstr("is a directory"));
}

TEST(ExpandConfigFlags, ShippedExampleConfigParses) {
  // deploy/qrag.yaml is the example the Docker image and the Kubernetes ConfigMap start from.
  std::ifstream in(std::string(QRAG_SOURCE_DIR) + "/deploy/qrag.yaml");
  ASSERT_TRUE(in) << "deploy/qrag.yaml is missing";
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  absl::StatusOr<std::vector<std::string>> flags = ConfigFlagsFromYaml(text, "deploy/qrag.yaml", FakeEnv({}));
  ASSERT_TRUE(flags.ok()) << flags.status();
  EXPECT_THAT(*flags, ::testing::Contains(HasSubstr("--listen=")));
}

}  // namespace
}  // namespace qrag::cli
