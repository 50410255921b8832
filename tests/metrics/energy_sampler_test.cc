// EnergySampler over scripted meters (driven with SampleNow; the background thread's interval is long), and
// the sliding-window efficiency figures.
#include "server/metrics/energy_sampler.h"

#include <deque>

#include "server/metrics/efficiency_window.h"
#include "tests/test_util.h"

namespace qrag::metrics {
namespace {

// Returns the scripted readings in order (then repeats the last); an error where a reading is unset.
class ScriptedMeter : public EnergyMeter {
 public:
  explicit ScriptedMeter(std::deque<std::optional<EnergyReading>> script) : script_(std::move(script)) {}
  absl::StatusOr<EnergyReading> Read() override {
    std::optional<EnergyReading> r = script_.front();
    if (script_.size() > 1) script_.pop_front();
    if (!r.has_value()) return absl::UnavailableError("scripted failure");
    return *r;
  }
  EnergyDomain domain() const override { return EnergyDomain::kCpu; }
  std::string description() const override { return "scripted"; }

 private:
  std::deque<std::optional<EnergyReading>> script_;
};

EnergyReading Joules(double j) { return {.joules = j, .watts = std::nullopt}; }
EnergyReading Watts(double w) { return {.joules = std::nullopt, .watts = w}; }

EnergySamplerOptions SlowOptions(std::vector<std::string>* log = nullptr) {
  EnergySamplerOptions o;
  o.interval = absl::Hours(1);  // the thread stays out of the way; the test samples by hand
  if (log != nullptr) o.log = [log](const std::string& line) { log->push_back(line); };
  return o;
}

TEST(EnergySampler, CounterMeter_JoulesFromCounter_NeverDecreasing) {
  EnergySampler s(std::make_unique<ScriptedMeter>(std::deque<std::optional<EnergyReading>>{
                      Joules(10), Joules(12.5), Joules(20)}),
                  SlowOptions());
  EXPECT_DOUBLE_EQ(s.latest().joules, 10);
  s.SampleNow();
  EXPECT_DOUBLE_EQ(s.latest().joules, 12.5);
  EXPECT_GT(s.latest().watts, 0);  // d(joules)/dt: the meter gives no power
  const double a = s.CumulativeJoules();
  const double b = s.CumulativeJoules();
  EXPECT_GE(a, 12.5);
  EXPECT_GE(b, a);
  s.SampleNow();
  EXPECT_GE(s.CumulativeJoules(), 20);
}

TEST(EnergySampler, PowerOnlyMeter_IntegratesPower) {
  EnergySampler s(std::make_unique<ScriptedMeter>(std::deque<std::optional<EnergyReading>>{Watts(100), Watts(300)}),
                  SlowOptions());
  const EnergySample first = s.latest();
  EXPECT_DOUBLE_EQ(first.joules, 0);
  EXPECT_DOUBLE_EQ(first.watts, 100);
  absl::SleepFor(absl::Milliseconds(20));
  s.SampleNow();
  const EnergySample second = s.latest();
  const double dt = absl::ToDoubleSeconds(second.time - first.time);
  EXPECT_NEAR(second.joules, 0.5 * (100 + 300) * dt, 1e-9);  // trapezoid
  EXPECT_DOUBLE_EQ(second.watts, 300);
}

TEST(EnergySampler, ReadFailures_LoggedOnce_LastSampleKept) {
  std::vector<std::string> log;
  EnergySampler s(std::make_unique<ScriptedMeter>(std::deque<std::optional<EnergyReading>>{
                      Joules(5), std::nullopt, std::nullopt, Joules(7)}),
                  SlowOptions(&log));
  s.SampleNow();
  s.SampleNow();
  EXPECT_DOUBLE_EQ(s.latest().joules, 5);
  ASSERT_EQ(log.size(), 1u);
  EXPECT_THAT(log[0], ::testing::HasSubstr("energy meter read failed (scripted): scripted failure"));
  s.SampleNow();
  EXPECT_DOUBLE_EQ(s.latest().joules, 7);
}

TEST(EnergySampler, OnSample_CalledForEverySuccessfulSample) {
  std::vector<double> seen;
  EnergySamplerOptions o = SlowOptions();
  o.on_sample = [&](const EnergySample& s) { seen.push_back(s.joules); };
  EnergySampler s(std::make_unique<ScriptedMeter>(std::deque<std::optional<EnergyReading>>{Joules(1), Joules(4)}),
                  std::move(o));
  s.SampleNow();
  EXPECT_EQ(seen, (std::vector<double>{1, 4}));
}

EfficiencyPoint Point(double seconds, double joules, int64_t tokens, int64_t fp8_ops, int64_t f32_ops) {
  EfficiencyPoint p;
  p.time = absl::UnixEpoch() + absl::Seconds(seconds);
  p.joules = joules;
  p.generated_tokens = tokens;
  p.ops[static_cast<int>(backend::Precision::kFP8)] = fp8_ops;
  p.ops[static_cast<int>(backend::Precision::kF32)] = f32_ops;
  return p;
}

TEST(EfficiencyWindow, TenSecondWindow_DifferencesOverWindow) {
  EfficiencyWindow w(absl::Seconds(10));
  EXPECT_FALSE(w.Compute().valid);
  w.Add(Point(0, 0, 0, 0, 0));
  EXPECT_FALSE(w.Compute().valid);  // one point
  w.Add(Point(5, 500, 100, 1000, 10));
  w.Add(Point(10, 1000, 150, 3000, 30));
  w.Add(Point(15, 2000, 250, 8000, 80));  // the window now starts at t=5
  const EfficiencyFigures f = w.Compute();
  ASSERT_TRUE(f.valid);
  EXPECT_DOUBLE_EQ(f.seconds, 10);
  EXPECT_DOUBLE_EQ(f.joules, 1500);
  EXPECT_DOUBLE_EQ(f.ops_per_joule[static_cast<int>(backend::Precision::kFP8)], 7000.0 / 1500);
  EXPECT_DOUBLE_EQ(f.ops_per_joule[static_cast<int>(backend::Precision::kF32)], 70.0 / 1500);
  EXPECT_DOUBLE_EQ(f.total_ops_per_joule, 7070.0 / 1500);
  EXPECT_DOUBLE_EQ(f.tokens_per_joule, 150.0 / 1500);
}

TEST(EfficiencyWindow, NoEnergyInWindow_Invalid) {
  EfficiencyWindow w(absl::Seconds(10));
  w.Add(Point(0, 3, 0, 0, 0));
  w.Add(Point(1, 3, 10, 100, 0));
  EXPECT_FALSE(w.Compute().valid);
}

}  // namespace
}  // namespace qrag::metrics
