#include "server/api/serving_state.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "server/api/admin_service.h"
#include "tests/test_util.h"

namespace qrag::api {
namespace {

using ::testing::HasSubstr;


// The engine pointer is only stored, never used, by ServingState.
engine::Engine* FakeEngine() { return reinterpret_cast<engine::Engine*>(0x1); }

TEST(ServingState, LoadingThenServingThenDraining) {
  ServingState state(ValidationOptions{.models = {"m"}});
  EXPECT_EQ(state.phase(), ServingPhase::kLoading);
  EXPECT_THAT(state.CheckAccepting(), ::StatusIs(absl::StatusCode::kUnavailable, HasSubstr("model loading")));
  EXPECT_THAT(state.Find("m"), ::StatusIsCode(absl::StatusCode::kUnavailable));
  EXPECT_THAT(state.Find("x"), ::StatusIsCode(absl::StatusCode::kNotFound));

  ServedModel m;
  m.name = "m";
  m.engine = FakeEngine();
  ASSERT_TRUE(state.Publish(m).ok());
  EXPECT_EQ(state.phase(), ServingPhase::kServing);
  EXPECT_TRUE(state.CheckAccepting().ok());
  ASSERT_TRUE(state.Find("").ok());
  EXPECT_EQ((*state.Find(""))->name, "m");
  EXPECT_EQ(state.Models().size(), 1u);
  EXPECT_THAT(state.Publish(m), ::StatusIsCode(absl::StatusCode::kInvalidArgument));

  state.StartDraining();
  EXPECT_EQ(state.phase(), ServingPhase::kDraining);
  EXPECT_THAT(state.CheckAccepting(), ::StatusIs(absl::StatusCode::kUnavailable, HasSubstr("shutting down")));
  EXPECT_STREQ(ServingPhaseName(state.phase()), "draining");
}

TEST(ServingState, PublishUnknownNameFails) {
  ServingState state(ValidationOptions{.models = {"m"}});
  ServedModel m;
  m.name = "other";
  m.engine = FakeEngine();
  EXPECT_THAT(state.Publish(m), ::StatusIsCode(absl::StatusCode::kNotFound));
  EXPECT_EQ(state.phase(), ServingPhase::kLoading);
}

TEST(ServingState, DrainingBeforeLoadedStaysDraining) {
  ServingState state(ValidationOptions{.models = {"m"}});
  state.StartDraining();
  ServedModel m;
  m.name = "m";
  m.engine = FakeEngine();
  ASSERT_TRUE(state.Publish(m).ok());
  EXPECT_EQ(state.phase(), ServingPhase::kDraining);
}

TEST(ServingState, StatsWhileLoadingAreZero) {
  ServingState state(ValidationOptions{.models = {"m"}});
  state.CallStarted();
  absl::StatusOr<qrag::v1::ServerStats> s = CollectServerStats(state, "");
  ASSERT_TRUE(s.ok()) << s.status();
  EXPECT_EQ(s->state(), "loading");
  EXPECT_EQ(s->model(), "m");
  EXPECT_EQ(s->kv_blocks_total(), 0);
  EXPECT_EQ(s->active_calls(), 1);
  EXPECT_THAT(CollectServerStats(state, "zzz"), ::StatusIsCode(absl::StatusCode::kNotFound));
}

}  // namespace
}  // namespace qrag::api
