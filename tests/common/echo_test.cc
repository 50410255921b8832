#include "server/common/echo.h"

#include <string>

#include "gtest/gtest.h"

namespace qrag {
namespace {

TEST(Echo, ShortValueQuotedWhole) { EXPECT_EQ(Echo("stories"), "'stories'"); }

TEST(Echo, LongValueCutWithItsSize) {
  const std::string big(8192, 'x');
  const std::string e = Echo(big);
  EXPECT_EQ(e, "'" + std::string(kMaxEchoBytes, 'x') + "...' (8192 bytes)");
  EXPECT_LT(e.size(), 100u);
}

TEST(Echo, CutNeverSplitsAUtf8Character) {
  // 63 ASCII bytes, then a 3-byte character straddling the 64-byte cap: it is dropped whole.
  const std::string v = std::string(63, 'a') + "\xE2\x82\xAC" + "tail";
  EXPECT_EQ(Echo(v), "'" + std::string(63, 'a') + "...' (70 bytes)");
}

TEST(Echo, ControlCharactersShownAsQuestionMarks) { EXPECT_EQ(Echo("a\nb\tc\x7f"), "'a?b?c?'"); }

}  // namespace
}  // namespace qrag
