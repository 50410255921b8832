// Server configuration files: `--config qrag.yaml` for qrag-server, so a container, a Kubernetes ConfigMap
// and a shell are configured the same way.
//
// The file is a flat YAML mapping from flag names (without the leading "--") to values:
//
//   model: /models/stories260K.bin
//   listen: 0.0.0.0:50051
//   quant: fp8
//   max-running: 32
//   auth-tokens: ${QRAG_AUTH_TOKENS_FILE}        # environment variables are expanded
//   model-name: ${QRAG_MODEL_NAME:-stories}        # with a default when unset or empty
//
// Each entry becomes "--name=value". A sequence value repeats the flag once per element. Values are taken
// as written (numbers, booleans and strings alike are passed as their text; the program's own flag parser
// checks them). Flags given on the command line override the file: ExpandConfigFlags puts the file's
// flags first and the parser keeps the last value of a flag.
#ifndef QRAG_SERVER_COMMON_CONFIG_FILE_H_
#define QRAG_SERVER_COMMON_CONFIG_FILE_H_

#include <functional>
#include <optional>
#include <string>
#include "absl/strings/string_view.h"
#include <vector>

#include "absl/status/statusor.h"

namespace qrag::cli {

// Looks up an environment variable; nullopt when unset. Injected so tests need not touch the process env.
using EnvLookup = std::function<std::optional<std::string>(absl::string_view name)>;

// The process environment (getenv).
EnvLookup ProcessEnv();

// Replaces ${NAME} and ${NAME:-default} in `value` (NAME: letters, digits, '_'; "$$" is a literal '$').
// INVALID_ARGUMENT for an unset variable without a default, or a malformed reference.
absl::StatusOr<std::string> ExpandEnv(absl::string_view value, const EnvLookup& env);

// The flags ("--name=value") that the YAML text `yaml` stands for; `origin` names it in errors.
// INVALID_ARGUMENT (naming origin, line and key) when the text is not YAML, not a mapping, a key is not a
// flag name (lower-case letters, digits and '-'), a value is a nested mapping or null, a key is "config"
// (files do not nest) or an environment reference cannot be expanded.
absl::StatusOr<std::vector<std::string>> ConfigFlagsFromYaml(absl::string_view yaml, absl::string_view origin,
                                                             const EnvLookup& env);

// argv with every "--config FILE" / "--config=FILE" replaced: the file's flags go first, then the other
// command-line arguments in their order (so the command line wins). argv[0] stays first.
// NOT_FOUND / PERMISSION_DENIED when a file cannot be read; INVALID_ARGUMENT as above, or when --config
// has no value.
absl::StatusOr<std::vector<std::string>> ExpandConfigFlags(const std::vector<std::string>& argv,
                                                           const EnvLookup& env);

}  // namespace qrag::cli

#endif  // QRAG_SERVER_COMMON_CONFIG_FILE_H_
