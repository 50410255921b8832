// Device selection (`--device`): parsing, auto resolution and the clean failure of cuda without a GPU.
#include "server/backend/registry.h"

#include "tests/test_util.h"

namespace qrag::backend {
namespace {

using ::testing::HasSubstr;

TEST(ParseDevice, AcceptsNamesCaseInsensitively) {
  EXPECT_EQ(*ParseDevice("auto"), Device::kAuto);
  EXPECT_EQ(*ParseDevice("cpu"), Device::kCpu);
  EXPECT_EQ(*ParseDevice("cuda"), Device::kCuda);
  EXPECT_EQ(*ParseDevice("GPU"), Device::kCuda);
  EXPECT_EQ(*ParseDevice("Cuda"), Device::kCuda);
  for (Device d : {Device::kAuto, Device::kCpu, Device::kCuda}) EXPECT_EQ(*ParseDevice(DeviceName(d)), d);
}

TEST(ParseDevice, RejectsOthersListingTheChoices) {
  for (const char* bad : {"", "tpu", "cuda:0", " cpu", "metal"}) {
    absl::StatusOr<Device> d = ParseDevice(bad);
    ASSERT_FALSE(d.ok()) << bad;
    EXPECT_EQ(d.status().code(), absl::StatusCode::kInvalidArgument);
    EXPECT_THAT(d.status().message(), HasSubstr("use cuda, cpu or auto"));
  }
}

TEST(ResolveDevice, AutoIsCudaExactlyWhenAGpuIsUsable) {
  std::string why;
  const int gpus = CudaGpuCount(&why);
  EXPECT_EQ(ResolveDevice(Device::kAuto), gpus > 0 ? Device::kCuda : Device::kCpu);
  EXPECT_EQ(ResolveDevice(Device::kCpu), Device::kCpu);
  EXPECT_EQ(ResolveDevice(Device::kCuda), Device::kCuda);
  if (gpus == 0) EXPECT_FALSE(why.empty());
  if (!CudaBackendBuilt()) EXPECT_EQ(gpus, 0);
}

TEST(CreateBackend, CpuAlwaysWorks) {
  BackendOptions o;
  o.device = Device::kCpu;
  o.cpu.reference = true;
  auto b = CreateBackend(o);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ((*b)->name(), "cpu-reference");
}

TEST(CreateBackend, CudaWithoutGpuIsFailedPreconditionNotACrash) {
  std::string why;
  BackendOptions o;
  o.device = Device::kCuda;
  auto b = CreateBackend(o);
  if (CudaGpuCount(&why) > 0) {
    ASSERT_TRUE(b.ok()) << b.status();
    EXPECT_THAT(std::string((*b)->name()), HasSubstr("cuda:0"));
    return;
  }
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(b.status().message(), HasSubstr("no usable CUDA GPU"));
  EXPECT_THAT(b.status().message(), HasSubstr("--device cpu"));
  // auto falls back to the CPU.
  o.device = Device::kAuto;
  auto a = CreateBackend(o);
  ASSERT_TRUE(a.ok()) << a.status();
  EXPECT_EQ((*a)->name(), "cpu");
}

TEST(CreateBackend, CudaDeviceOrdinalOutOfRange) {
  std::string why;
  if (CudaGpuCount(&why) == 0) GTEST_SKIP() << "needs a GPU: " << why;
  BackendOptions o;
  o.device = Device::kCuda;
  o.cuda_device = 1000;
  auto b = CreateBackend(o);
  ASSERT_FALSE(b.ok());
  EXPECT_EQ(b.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(b.status().message(), HasSubstr("does not exist"));
}

}  // namespace
}  // namespace qrag::backend
