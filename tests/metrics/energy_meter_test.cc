// Energy meters without the hardware: NVML through dlopen of a fake libnvidia-ml (tests/metrics/fake_nvml.cc),
// of a missing library and of a library that is not NVML; RAPL over a fake powercap tree; the auto choice.
#include "server/metrics/energy_meter.h"

#include <dlfcn.h>

#include <filesystem>

#include "server/common/status.h"
#include "server/metrics/nvml_meter.h"
#include "server/metrics/rapl_meter.h"
#include "tests/test_util.h"

namespace qrag::metrics {
namespace {

using ::qrag::testing::TempDir;
using ::qrag::testing::WriteFile;
using ::testing::HasSubstr;

// The fake NVML library and its setter, loaded once (the meter's dlopen of the same path shares it).
struct FakeNvml {
  void* handle = nullptr;
  void (*set)(unsigned long long, unsigned int, int, int) = nullptr;
  int (*init_calls)() = nullptr;
  int (*shutdown_calls)() = nullptr;

  FakeNvml() {
    handle = dlopen(QRAG_FAKE_NVML_LIBRARY, RTLD_NOW | RTLD_LOCAL);
    QRAG_CHECK(handle != nullptr);
    set = reinterpret_cast<decltype(set)>(dlsym(handle, "fake_nvml_set"));
    init_calls = reinterpret_cast<decltype(init_calls)>(dlsym(handle, "fake_nvml_init_calls"));
    shutdown_calls = reinterpret_cast<decltype(shutdown_calls)>(dlsym(handle, "fake_nvml_shutdown_calls"));
    QRAG_CHECK(set != nullptr && init_calls != nullptr && shutdown_calls != nullptr);
  }
  ~FakeNvml() { dlclose(handle); }
};

TEST(NvmlEnergyMeter, FakeLibrary_EnergyCounterAndPower_JoulesSinceOpen) {
  FakeNvml fake;
  fake.set(5'000'000, 300'500, 0, 1);  // 5000 J since driver load, 300.5 W
  const int shutdowns = fake.shutdown_calls();
  {
    absl::StatusOr<std::unique_ptr<NvmlEnergyMeter>> m = NvmlEnergyMeter::Open({.library = QRAG_FAKE_NVML_LIBRARY});
    ASSERT_TRUE(m.ok()) << m.status();
    EXPECT_EQ((*m)->domain(), EnergyDomain::kGpu);
    EXPECT_EQ((*m)->description(), "nvml: Fake H200 (GPU 0)");
    fake.set(5'012'345, 410'000, 0, 1);
    absl::StatusOr<EnergyReading> r = (*m)->Read();
    ASSERT_TRUE(r.ok()) << r.status();
    ASSERT_TRUE(r->joules.has_value());
    EXPECT_DOUBLE_EQ(*r->joules, 12.345);
    ASSERT_TRUE(r->watts.has_value());
    EXPECT_DOUBLE_EQ(*r->watts, 410.0);
  }
  EXPECT_EQ(fake.shutdown_calls(), shutdowns + 1);  // nvmlShutdown on destruction
}

TEST(NvmlEnergyMeter, FakeLibrary_NoEnergyCounter_PowerOnly) {
  FakeNvml fake;
  fake.set(0, 250'000, /*NOT_SUPPORTED*/ 3, 1);
  absl::StatusOr<std::unique_ptr<NvmlEnergyMeter>> m = NvmlEnergyMeter::Open({.library = QRAG_FAKE_NVML_LIBRARY});
  ASSERT_TRUE(m.ok()) << m.status();
  absl::StatusOr<EnergyReading> r = (*m)->Read();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_FALSE(r->joules.has_value());
  EXPECT_DOUBLE_EQ(r->watts.value_or(-1), 250.0);
}

TEST(NvmlEnergyMeter, FakeLibrary_DeviceIndexPastDevices_FailedPrecondition) {
  FakeNvml fake;
  fake.set(0, 1000, 0, 1);
  EXPECT_THAT(NvmlEnergyMeter::Open({.library = QRAG_FAKE_NVML_LIBRARY, .device_index = 3}),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("GPU 3: nvmlDeviceGetHandleByIndex_v2 failed: Invalid Argument")));
  EXPECT_THAT(NvmlEnergyMeter::Open({.library = QRAG_FAKE_NVML_LIBRARY, .device_index = -1}),
              StatusIsCode(absl::StatusCode::kInvalidArgument));
}

TEST(NvmlEnergyMeter, AbsentLibrary_NotFound) {
  EXPECT_THAT(NvmlEnergyMeter::Open({.library = "libnvidia-ml-absent-for-test.so.1"}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("cannot load libnvidia-ml-absent-for-test.so.1")));
}

TEST(NvmlEnergyMeter, LibraryWithoutNvmlSymbols_FailedPrecondition) {
  EXPECT_THAT(NvmlEnergyMeter::Open({.library = "libm.so.6"}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("not an NVML library")));
}

// A powercap tree: intel-rapl:N package zones with an optional subzone and the control-type directory.
void WriteZone(const std::string& root, const std::string& zone, uint64_t energy_uj, uint64_t max_range_uj,
               const std::string& name) {
  std::filesystem::create_directories(root + "/" + zone);
  WriteFile(root + "/" + zone + "/energy_uj", std::to_string(energy_uj) + "\n");
  WriteFile(root + "/" + zone + "/max_energy_range_uj", std::to_string(max_range_uj) + "\n");
  WriteFile(root + "/" + zone + "/name", name + "\n");
}

TEST(RaplEnergyMeter, TwoPackages_SumsPackagesOnly_UnwrapsWraparound) {
  TempDir dir;
  const std::string root = dir.path();
  WriteZone(root, "intel-rapl:0", 1'000'000, 10'000'000, "package-0");
  WriteZone(root, "intel-rapl:1", 9'500'000, 10'000'000, "package-1");
  WriteZone(root, "intel-rapl:0:0", 123, 10'000'000, "core");  // part of package-0: not added again
  std::filesystem::create_directories(root + "/intel-rapl");
  absl::StatusOr<std::unique_ptr<RaplEnergyMeter>> m = RaplEnergyMeter::Open({.root = root});
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ((*m)->domain(), EnergyDomain::kCpu);
  EXPECT_EQ((*m)->description(), "rapl: package-0 + package-1");
  absl::StatusOr<EnergyReading> r = (*m)->Read();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_DOUBLE_EQ(r->joules.value_or(-1), 0.0);
  EXPECT_FALSE(r->watts.has_value());

  // package-0 +2 J; package-1 wraps: 9.5 J -> 10 J (max) -> 0 -> 0.25 J = +0.75 J.
  WriteZone(root, "intel-rapl:0", 3'000'000, 10'000'000, "package-0");
  WriteZone(root, "intel-rapl:1", 250'000, 10'000'000, "package-1");
  WriteZone(root, "intel-rapl:0:0", 9'999'999, 10'000'000, "core");
  r = (*m)->Read();
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_DOUBLE_EQ(r->joules.value_or(-1), 2.75);
}

TEST(RaplEnergyMeter, MissingRoot_NotFound) {
  EXPECT_THAT(RaplEnergyMeter::Open({.root = "/nonexistent/powercap"}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/powercap does not exist")));
}

TEST(RaplEnergyMeter, NoPackageZone_NotFound) {
  TempDir dir;
  std::filesystem::create_directories(dir.Join("intel-rapl"));
  EXPECT_THAT(RaplEnergyMeter::Open({.root = dir.path()}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no intel-rapl:N package zone")));
}

TEST(RaplEnergyMeter, CounterNotANumber_FailedPrecondition) {
  TempDir dir;
  WriteZone(dir.path(), "intel-rapl:0", 5, 100, "package-0");
  WriteFile(dir.Join("intel-rapl:0/energy_uj"), "n/a\n");
  EXPECT_THAT(RaplEnergyMeter::Open({.root = dir.path()}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("energy_uj holds 'n/a'")));
}

TEST(RaplEnergyMeter, CounterFileMissing_NotFound) {
  TempDir dir;
  WriteZone(dir.path(), "intel-rapl:0", 5, 100, "package-0");
  std::filesystem::remove(dir.Join("intel-rapl:0/energy_uj"));
  EXPECT_THAT(RaplEnergyMeter::Open({.root = dir.path()}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("energy_uj")));
}

TEST(RaplDelta, NoWrap_Wrap) {
  EXPECT_EQ(RaplDelta(100, 250, 1000), 150u);
  EXPECT_EQ(RaplDelta(900, 50, 1000), 150u);
  EXPECT_EQ(RaplDelta(7, 7, 1000), 0u);
}

TEST(OpenEnergyMeter, AutoWithNeither_NoneWithBothReasons) {
  EnergyMeterOptions o;
  o.nvml_library = "libnvidia-ml-absent-for-test.so.1";
  o.powercap_root = "/nonexistent/powercap";
  absl::StatusOr<EnergyMeterChoice> c = OpenEnergyMeter(o);
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->meter, nullptr);
  EXPECT_THAT(c->reason, HasSubstr("NVML: cannot load libnvidia-ml-absent-for-test.so.1"));
  EXPECT_THAT(c->reason, HasSubstr("RAPL: /nonexistent/powercap does not exist"));
}

TEST(OpenEnergyMeter, AutoWithoutNvml_FallsBackToRapl) {
  TempDir dir;
  WriteZone(dir.path(), "intel-rapl:0", 5, 100, "package-0");
  EnergyMeterOptions o;
  o.nvml_library = "libnvidia-ml-absent-for-test.so.1";
  o.powercap_root = dir.path();
  absl::StatusOr<EnergyMeterChoice> c = OpenEnergyMeter(o);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_NE(c->meter, nullptr);
  EXPECT_EQ(c->meter->domain(), EnergyDomain::kCpu);
}

TEST(OpenEnergyMeter, AutoWithNvml_PrefersNvml) {
  FakeNvml fake;
  fake.set(1000, 1000, 0, 1);
  TempDir dir;
  WriteZone(dir.path(), "intel-rapl:0", 5, 100, "package-0");
  EnergyMeterOptions o;
  o.nvml_library = QRAG_FAKE_NVML_LIBRARY;
  o.powercap_root = dir.path();
  absl::StatusOr<EnergyMeterChoice> c = OpenEnergyMeter(o);
  ASSERT_TRUE(c.ok()) << c.status();
  ASSERT_NE(c->meter, nullptr);
  EXPECT_EQ(c->meter->domain(), EnergyDomain::kGpu);
}

TEST(OpenEnergyMeter, ExplicitKinds_ErrorsInsteadOfFallback) {
  EnergyMeterOptions o;
  o.nvml_library = "libnvidia-ml-absent-for-test.so.1";
  o.powercap_root = "/nonexistent/powercap";
  o.kind = EnergyMeterKind::kNvml;
  EXPECT_THAT(OpenEnergyMeter(o), StatusIsCode(absl::StatusCode::kNotFound));
  o.kind = EnergyMeterKind::kRapl;
  EXPECT_THAT(OpenEnergyMeter(o), StatusIsCode(absl::StatusCode::kNotFound));
  o.kind = EnergyMeterKind::kNone;
  absl::StatusOr<EnergyMeterChoice> c = OpenEnergyMeter(o);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->meter, nullptr);
  EXPECT_THAT(c->reason, HasSubstr("disabled"));
}

TEST(ParseEnergyMeterKind, Names) {
  EXPECT_EQ(*ParseEnergyMeterKind("auto"), EnergyMeterKind::kAuto);
  EXPECT_EQ(*ParseEnergyMeterKind("nvml"), EnergyMeterKind::kNvml);
  EXPECT_EQ(*ParseEnergyMeterKind("rapl"), EnergyMeterKind::kRapl);
  EXPECT_EQ(*ParseEnergyMeterKind("none"), EnergyMeterKind::kNone);
  EXPECT_THAT(ParseEnergyMeterKind("dcgm"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("use auto, nvml, rapl or none")));
}

}  // namespace
}  // namespace qrag::metrics
