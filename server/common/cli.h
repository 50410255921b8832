// Small helpers shared by qrag's command-line programs (qrag-run, qrag-server, qrag): usage errors that
// exit with status 2, and checked number parsing of flag values.
#ifndef QRAG_SERVER_COMMON_CLI_H_
#define QRAG_SERVER_COMMON_CLI_H_

#include <cstdio>
#include <cstdlib>
#include <string>
#include <type_traits>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"

namespace qrag::cli {

// Prints "PROGRAM: MSG" and a pointer to --help on stderr, and exits with status 2 (bad usage).
[[noreturn]] inline void UsageError(const char* program, const std::string& msg) {
  std::fprintf(stderr, "%s: %s\n(run %s --help for usage)\n", program, msg.c_str(), program);
  std::exit(2);
}

// `text` as a T (integer or floating point), or a usage error naming `flag`.
template <typename T>
T ParseNumber(const char* program, const std::string& flag, const std::string& text) {
  T value{};
  bool ok;
  if constexpr (std::is_same_v<T, float>) {
    ok = absl::SimpleAtof(text, &value);
  } else if constexpr (std::is_floating_point_v<T>) {
    ok = absl::SimpleAtod(text, &value);
  } else {
    ok = absl::SimpleAtoi(text, &value);
  }
  if (!ok) UsageError(program, absl::StrCat(flag, ": '", text, "' is not a valid number"));
  return value;
}

// The value of the flag argv[*i] ("--flag=value" or "--flag value"; the latter advances *i), with `flag`
// reduced to its name. A usage error when the value is missing.
inline std::string FlagValue(const char* program, int argc, char** argv, int* i, std::string* flag) {
  if (size_t eq = flag->find('='); flag->rfind("--", 0) == 0 && eq != std::string::npos) {
    std::string value = flag->substr(eq + 1);
    flag->resize(eq);
    return value;
  }
  if (*i + 1 >= argc) UsageError(program, absl::StrCat(*flag, " needs a value"));
  return argv[++*i];
}

}  // namespace qrag::cli

#endif  // QRAG_SERVER_COMMON_CLI_H_
