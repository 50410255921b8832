// A stand-in for libnvidia-ml.so.1 with NVML's C entry points, so the dlopen path of NvmlEnergyMeter runs
// for real without a driver. Unit tests set the values it returns through fake_nvml_set (found with dlsym
// in the same loaded copy of the library). With $QRAG_FAKE_NVML_WATTS set (the server integration test), it
// instead draws that constant power from nvmlInit on: energy = watts x time since nvmlInit.
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
double g_constant_watts = -1;  // >= 0: $QRAG_FAKE_NVML_WATTS
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
  if (const char* w = std::getenv("QRAG_FAKE_NVML_WATTS"); w != nullptr) {
    g_constant_watts = std::atof(w);
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
  *mw = g_constant_watts >= 0 ? static_cast<unsigned int>(g_constant_watts * 1000) : g_power_mw;
  return 0;
}
int nvmlDeviceGetTotalEnergyConsumption(void* device, unsigned long long* mj) {
  if (g_energy_status != 0) return g_energy_status;
  if (g_constant_watts >= 0) {
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - g_start).count();
    *mj = static_cast<unsigned long long>(g_constant_watts * seconds * 1000);
    return 0;
  }
  *mj = g_energy_mj;
  return 0;
}

}  // extern "C"
