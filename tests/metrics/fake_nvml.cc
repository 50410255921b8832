// A stand-in for libnvidia-ml.so.1 with NVML's C entry points, so the dlopen path of NvmlEnergyMeter runs
// for real without a driver. The test sets the values it returns through fake_nvml_set (found with dlsym
// in the same loaded copy of the library). Loaded by a whole server process (tests/deploy/deploy_test.py puts it
// first on LD_LIBRARY_PATH as libnvidia-ml.so.1), it reads a constant power draw from
// QRAG_FAKE_NVML_POWER_MW at nvmlInit and reports energy = power x time since then, like a device at that power.
#include <chrono>
#include <cstdlib>
#include <cstring>

namespace {
unsigned long long g_energy_mj = 0;
unsigned int g_power_mw = 0;
int g_energy_status = 0;  // NVML return code of nvmlDeviceGetTotalEnergyConsumption
int g_devices = 1;
int g_init_calls = 0;
int g_shutdown_calls = 0;
int g_device_token = 0;
bool g_clocked = false;  // energy follows the wall clock (QRAG_FAKE_NVML_POWER_MW)
std::chrono::steady_clock::time_point g_start;
}  // namespace

extern "C" {

void fake_nvml_set(unsigned long long energy_mj, unsigned int power_mw, int energy_status, int devices) {
  g_energy_mj = energy_mj;
  g_power_mw = power_mw;
  g_energy_status = energy_status;
  g_devices = devices;
}
int fake_nvml_init_calls() { return g_init_calls; }
int fake_nvml_shutdown_calls() { return g_shutdown_calls; }

const char* nvmlErrorString(int r) { return r == 2 ? "Invalid Argument" : r == 3 ? "Not Supported" : "Unknown Error"; }
int nvmlInit_v2() {
  ++g_init_calls;
  if (const char* power = std::getenv("QRAG_FAKE_NVML_POWER_MW"); power != nullptr) {
    g_power_mw = static_cast<unsigned int>(std::strtoul(power, nullptr, 10));
    g_clocked = true;
    g_start = std::chrono::steady_clock::now();
  }
  return 0;
}
int nvmlShutdown() {
  ++g_shutdown_calls;
  return 0;
}
int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void** device) {
  if (static_cast<int>(index) >= g_devices) return 2;  // NVML_ERROR_INVALID_ARGUMENT
  *device = &g_device_token;
  return 0;
}
int nvmlDeviceGetName(void* device, char* name, unsigned int length) {
  std::strncpy(name, "Fake H200", length);
  return 0;
}
int nvmlDeviceGetPowerUsage(void* device, unsigned int* mw) {
  *mw = g_power_mw;
  return 0;
}
int nvmlDeviceGetTotalEnergyConsumption(void* device, unsigned long long* mj) {
  if (g_energy_status != 0) return g_energy_status;
  *mj = g_energy_mj;
  if (g_clocked) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - g_start).count();
    *mj += static_cast<unsigned long long>(g_power_mw * seconds);  // mW x s = mJ
  }
  return 0;
}

}  // extern "C"
