#include "server/api/security.h"

#include <string>
#include "absl/strings/string_view.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace qrag::api {
namespace {

using ::testing::HasSubstr;

TEST(ConstantTimeEquals, EqualUnequalPrefixLongerEmpty) {
  EXPECT_TRUE(ConstantTimeEquals("abc", "abc"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abd"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "ab"));
  EXPECT_FALSE(ConstantTimeEquals("abc", "abcabc"));  // a repeated: the modulo walk must not accept it
  EXPECT_FALSE(ConstantTimeEquals("abc", ""));
  EXPECT_FALSE(ConstantTimeEquals("", "abc"));
  EXPECT_TRUE(ConstantTimeEquals("", ""));
}

TEST(TokenAuthenticator, FileContents_CommentsBlankLinesCrlfWhitespace) {
  absl::StatusOr<TokenAuthenticator> auth =
      TokenAuthenticator::FromFileContents("# ops tokens\n\n  tok-1  \r\ntok-2\n# tok-3\n", "tokens.txt");
  ASSERT_TRUE(auth.ok()) << auth.status();
  EXPECT_EQ(auth->size(), 2u);
  for (absl::string_view header : {"Bearer tok-1", "Bearer tok-2", "bearer tok-2"}) {
    EXPECT_TRUE(auth->CheckAuthorization(&header).ok()) << header;
  }
  for (absl::string_view header : {"Bearer tok-3", "Bearer # tok-3", "Bearer tok-", "Bearer tok-12", "tok-1"}) {
    EXPECT_EQ(auth->CheckAuthorization(&header).code(), absl::StatusCode::kUnauthenticated) << header;
  }
}

TEST(TokenAuthenticator, MessagesSayWhatIsWrongWithoutTheToken) {
  absl::StatusOr<TokenAuthenticator> auth = TokenAuthenticator::FromTokens({"secret"});
  ASSERT_TRUE(auth.ok());
  absl::Status missing = auth->CheckAuthorization(nullptr);
  EXPECT_EQ(missing.code(), absl::StatusCode::kUnauthenticated);
  EXPECT_THAT(missing.message(), HasSubstr("missing"));
  absl::string_view basic = "Basic c2VjcmV0";
  EXPECT_THAT(auth->CheckAuthorization(&basic).message(), HasSubstr("'Bearer <token>'"));
  absl::string_view wrong = "Bearer secreT";
  absl::Status s = auth->CheckAuthorization(&wrong);
  EXPECT_THAT(s.message(), HasSubstr("not valid"));
  EXPECT_THAT(s.message(), ::testing::Not(HasSubstr("secret")));
}

TEST(TokenAuthenticator, BadFilesAreInvalidArgumentOrNotFound) {
  EXPECT_EQ(TokenAuthenticator::FromFileContents("# only comments\n\n", "t").status().code(),
            absl::StatusCode::kInvalidArgument);
  absl::Status spaced = TokenAuthenticator::FromFileContents("ok\ntwo words\n", "t.txt").status();
  EXPECT_EQ(spaced.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(spaced.message(), HasSubstr("t.txt line 2"));
  EXPECT_EQ(TokenAuthenticator::FromFile("/nonexistent/tokens").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(TokenAuthenticator::FromTokens({}).status().code(), absl::StatusCode::kInvalidArgument);
}

TEST(LoadServerTlsCredentials, MissingFilesNameTheFlag) {
  absl::Status s = LoadServerTlsCredentials({.cert_chain = "/nonexistent/c.pem", .private_key = "/nonexistent/k"})
                       .status();
  EXPECT_EQ(s.code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr("--tls-cert"));
  EXPECT_EQ(LoadServerTlsCredentials({.cert_chain = "/x"}).status().code(), absl::StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace qrag::api
