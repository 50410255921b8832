#include "server/engine/request_limits.h"

#include <cstdint>
#include <limits>

#include "tests/test_util.h"

namespace qrag::engine {
namespace {

using ::testing::HasSubstr;

TEST(RequestLimits, MaxTokensMustBePositive) {
  EXPECT_TRUE(CheckMaxTokens(1).ok());
  EXPECT_THAT(CheckMaxTokens(0), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("max_tokens must be > 0")));
  EXPECT_THAT(CheckMaxTokens(-5), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("(got -5)")));
}

TEST(RequestLimits, FitsContext_ExactBoundary) {
  EXPECT_TRUE(CheckFitsContext(10, 502, 512).ok());
  EXPECT_THAT(CheckFitsContext(10, 503, 512),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("use max_tokens <= 502")));
  EXPECT_THAT(CheckFitsContext(512, 1, 512), StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("shorten the prompt")));
  EXPECT_THAT(CheckFitsContext(10, 0, 512), StatusIsCode(absl::StatusCode::kInvalidArgument));
}

// qrag-run --max-tokens 2147483647 used to add prompt + max_tokens, overflow, and pass the check.
TEST(RequestLimits, FitsContext_Int32MaxDoesNotOverflow) {
  EXPECT_THAT(CheckFitsContext(22, std::numeric_limits<int32_t>::max(), 512),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("use max_tokens <= 490")));
}

}  // namespace
}  // namespace qrag::engine
