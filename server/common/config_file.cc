#include "server/common/config_file.h"

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/container/flat_hash_set.h"
#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/common/status.h"
#include "yaml-cpp/yaml.h"

namespace qrag::cli {
namespace {

bool IsFlagName(absl::string_view key) {
  if (key.empty() || key.front() == '-') return false;
  for (char c : key) {
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

bool IsEnvNameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

// "FILE line N, 'key'" for error messages (yaml-cpp marks are 0-based).
std::string Where(absl::string_view origin, const YAML::Mark& mark, absl::string_view key) {
  std::string where = absl::StrCat(origin, " line ", mark.line + 1);
  if (!key.empty()) absl::StrAppend(&where, ", '", key, "'");
  return where;
}

absl::StatusOr<std::string> ReadFile(const std::string& path) {
  std::error_code dir_ec;
  if (std::filesystem::is_directory(path, dir_ec)) {
    return absl::InvalidArgumentError(absl::StrCat("config file ", path, " is a directory (give a YAML file)"));
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    std::error_code ec;
    return std::filesystem::exists(path, ec)
               ? absl::PermissionDeniedError(absl::StrCat("config file ", path, " cannot be read"))
               : absl::NotFoundError(absl::StrCat("config file ", path, " does not exist"));
  }
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return absl::DataLossError(absl::StrCat("config file ", path, ": read error"));
  return text.str();
}

}  // namespace

EnvLookup ProcessEnv() {
  return [](absl::string_view name) -> std::optional<std::string> {
    const char* value = std::getenv(std::string(name).c_str());
    if (value == nullptr) return std::nullopt;
    return std::string(value);
  };
}

absl::StatusOr<std::string> ExpandEnv(absl::string_view value, const EnvLookup& env) {
  std::string out;
  for (size_t i = 0; i < value.size();) {
    if (value[i] != '$') {
      out += value[i++];
      continue;
    }
    if (i + 1 < value.size() && value[i + 1] == '$') {
      out += '$';
      i += 2;
      continue;
    }
    if (i + 1 >= value.size() || value[i + 1] != '{') {
      return absl::InvalidArgumentError(
          absl::StrCat("'", value, "': a '$' must start ${NAME} or ${NAME:-default} (write $$ for a literal $)"));
    }
    const size_t close = value.find('}', i + 2);
    if (close == absl::string_view::npos) {
      return absl::InvalidArgumentError(absl::StrCat("'", value, "': ${ without a closing }"));
    }
    absl::string_view ref = value.substr(i + 2, close - i - 2);
    std::optional<absl::string_view> fallback;
    if (size_t sep = ref.find(":-"); sep != absl::string_view::npos) {
      fallback = ref.substr(sep + 2);
      ref = ref.substr(0, sep);
    }
    if (ref.empty() || (ref.front() >= '0' && ref.front() <= '9') ||
        !std::all_of(ref.begin(), ref.end(), IsEnvNameChar)) {
      return absl::InvalidArgumentError(
          absl::StrCat("'", value, "': '", ref, "' is not an environment variable name"));
    }
    std::optional<std::string> found = env(ref);
    if (found.has_value() && !(found->empty() && fallback.has_value())) {
      out += *found;
    } else if (fallback.has_value()) {
      absl::StrAppend(&out, *fallback);
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("'", value, "': environment variable ", ref,
                       " is not set (set it, or write ${", ref, ":-default})"));
    }
    i = close + 1;
  }
  return out;
}

absl::StatusOr<std::vector<std::string>> ConfigFlagsFromYaml(absl::string_view yaml, absl::string_view origin,
                                                             const EnvLookup& env) {
  YAML::Node root;
  try {
    root = YAML::Load(std::string(yaml));
  } catch (const YAML::Exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat(Where(origin, e.mark, ""), ": not valid YAML: ", e.msg));
  }
  std::vector<std::string> flags;
  if (root.IsNull()) return flags;  // an empty file configures nothing
  if (!root.IsMap()) {
    return absl::InvalidArgumentError(absl::StrCat(
        origin, ": the config must be a mapping of flag names to values (\"listen: 0.0.0.0:50051\")"));
  }
  absl::flat_hash_set<std::string> seen;
  for (const auto& entry : root) {
    const YAML::Node& key_node = entry.first;
    const YAML::Node& value = entry.second;
    if (!key_node.IsScalar()) {
      return absl::InvalidArgumentError(absl::StrCat(Where(origin, key_node.Mark(), ""), ": keys must be flag names"));
    }
    const std::string key = key_node.Scalar();
    const std::string where = Where(origin, key_node.Mark(), key);
    if (!IsFlagName(key)) {
      return absl::InvalidArgumentError(absl::StrCat(
          where, ": not a flag name (write the flag without its dashes, e.g. 'max-running' for --max-running)"));
    }
    if (key == "config") return absl::InvalidArgumentError(absl::StrCat(where, ": config files do not nest"));
    if (key == "help") return absl::InvalidArgumentError(absl::StrCat(where, ": --help is not a setting"));
    if (!seen.insert(key).second) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": given twice (use a list for a repeated flag)"));
    }
    if (value.IsNull()) return absl::InvalidArgumentError(absl::StrCat(where, ": has no value"));
    if (value.IsMap()) {
      return absl::InvalidArgumentError(absl::StrCat(where, ": must be a plain value or a list, not a mapping"));
    }
    std::vector<std::string> values;
    if (value.IsSequence()) {
      for (size_t j = 0; j < value.size(); ++j) {
        if (!value[j].IsScalar()) {
          return absl::InvalidArgumentError(absl::StrCat(where, ": list elements must be plain values"));
        }
        values.push_back(value[j].Scalar());
      }
    } else {
      values.push_back(value.Scalar());
    }
    for (const std::string& v : values) {
      absl::StatusOr<std::string> expanded = ExpandEnv(v, env);
      if (!expanded.ok()) {
        return absl::InvalidArgumentError(absl::StrCat(where, ": ", expanded.status().message()));
      }
      flags.push_back(absl::StrCat("--", key, "=", *expanded));
    }
  }
  return flags;
}

absl::StatusOr<std::vector<std::string>> ExpandConfigFlags(const std::vector<std::string>& argv,
                                                           const EnvLookup& env) {
  std::vector<std::string> from_files, rest;
  for (size_t i = 0; i < argv.size(); ++i) {
    const std::string& arg = argv[i];
    if (i == 0) continue;
    std::string path;
    if (arg == "--config") {
      if (i + 1 >= argv.size()) return absl::InvalidArgumentError("--config needs a value (a YAML file)");
      path = argv[++i];
    } else if (absl::StartsWith(arg, "--config=")) {
      path = arg.substr(9);
    } else {
      rest.push_back(arg);
      continue;
    }
    QRAG_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
    QRAG_ASSIGN_OR_RETURN(std::vector<std::string> flags, ConfigFlagsFromYaml(text, path, env));
    from_files.insert(from_files.end(), flags.begin(), flags.end());
  }
  std::vector<std::string> out;
  if (!argv.empty()) out.push_back(argv[0]);
  out.insert(out.end(), from_files.begin(), from_files.end());
  out.insert(out.end(), rest.begin(), rest.end());
  return out;
}

}  // namespace qrag::cli
