// The server's YAML config file (qrag-server --config): input = [YAML NUL value of $FUZZ_VAR]. Every flag it
// yields must look like "--name=value".
#include <cstdint>
#include <optional>
#include <string>

#include "server/common/config_file.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qrag;
  const auto parts = fuzz::SplitParts(fuzz::AsText(data, size), 2);
  const std::string var(parts[1]);
  cli::EnvLookup env = [&var](absl::string_view name) -> std::optional<std::string> {
    if (name == "FUZZ_VAR") return var;
    return std::nullopt;
  };
  const absl::string_view yaml(parts[0].data(), parts[0].size());
  auto flags = cli::ConfigFlagsFromYaml(yaml, "fuzz.yaml", env);
  if (!flags.ok()) {
    fuzz::CheckInputError(flags.status(), "ConfigFlagsFromYaml");
    return 0;
  }
  for (const std::string& f : *flags) {
    if (f.size() < 3 || f.compare(0, 2, "--") != 0 || f.find('=') == std::string::npos) {
      fuzz::Fail("a config flag is not --name=value: " + f);
    }
  }
  auto expanded = cli::ExpandEnv(absl::string_view(parts[1].data(), parts[1].size()), env);
  if (!expanded.ok()) fuzz::CheckInputError(expanded.status(), "ExpandEnv");
  return 0;
}
