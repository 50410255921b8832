// Shared helpers for qrag tests: locating ../shared data, temporary directories, status matchers.
#ifndef QRAG_TESTS_TEST_UTIL_H_
#define QRAG_TESTS_TEST_UTIL_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace qrag::testing {

// The shared data folder: $QRAG_SHARED_DIR, else ../shared beside the source tree. Empty when absent.
std::string SharedDir();

// The absolute path of `relative` under the shared folder, or nullopt when it does not exist.
std::optional<std::string> SharedPath(const std::string& relative);

// True when QRAG_REQUIRE_SHARED=1: missing shared data is then a failure, not a skip.
bool RequireShared();

// A model fetched into the test cache by a tests/fetch_*.sh script: $`env_var` when set and non-empty, else
// ${QRAG_CACHE_DIR:-~/.cache/qrag}/`relative`; nullopt when that path (or, if `probe` is not empty, the file
// `probe` inside it) does not exist.
std::optional<std::string> CachedModelPath(const char* env_var, const std::string& relative,
                                           const std::string& probe = "");

// A fresh empty directory under the system temp dir, removed (recursively) on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Join(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

void WriteFile(const std::string& path, const std::string& bytes);
std::string ReadFile(const std::string& path);

}  // namespace qrag::testing

// Skips the test (or fails it under QRAG_REQUIRE_SHARED=1) when shared data `relative` is missing;
// otherwise assigns its absolute path to `var`.
#define QRAG_REQUIRE_SHARED_PATH(var, relative)                                              \
  std::string var;                                                                           \
  do {                                                                                       \
    auto qrag_p_ = ::qrag::testing::SharedPath(relative);                                    \
    if (!qrag_p_.has_value()) {                                                              \
      if (::qrag::testing::RequireShared()) {                                                \
        FAIL() << "shared data missing: " << (relative) << " (looked in '"                  \
               << ::qrag::testing::SharedDir() << "'; QRAG_REQUIRE_SHARED=1 is set)";         \
      }                                                                                      \
      GTEST_SKIP() << "shared data missing: " << (relative)                                  \
                   << " (set QRAG_SHARED_DIR to the folder holding models/ and data/)";      \
    }                                                                                        \
    var = *qrag_p_;                                                                          \
  } while (0)

// EXPECT_THAT(status_or_statusor, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("...")))
MATCHER_P(StatusIsCode, code, "") {
  absl::Status s;
  if constexpr (std::is_same_v<std::decay_t<arg_type>, absl::Status>) s = arg; else s = arg.status();
  *result_listener << "status is " << s;
  return s.code() == code;
}
MATCHER_P2(StatusIs, code, msg_matcher, "") {
  absl::Status s;
  if constexpr (std::is_same_v<std::decay_t<arg_type>, absl::Status>) s = arg; else s = arg.status();
  *result_listener << "status is " << s;
  return s.code() == code &&
         ::testing::ExplainMatchResult(msg_matcher, std::string(s.message()), result_listener);
}

#endif  // QRAG_TESTS_TEST_UTIL_H_
