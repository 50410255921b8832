// The llama2.c checkpoint loader (legacy, v1, v2 Q8_0) on arbitrary files; accepted tensors are read in full.
#include <cstdint>
#include <vector>

#include "server/model/llama2c_loader.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qrag;
  const std::string& path = fuzz::WriteScratchFile(fuzz::AsText(data, size), ".bin");
  absl::StatusOr<model::LoadedModel> m = model::LoadLlama2cCheckpoint(path);
  if (!m.ok()) {
    fuzz::CheckInputError(m.status(), "LoadLlama2cCheckpoint");
    return 0;
  }
  for (const auto& [name, t] : m->tensors) {
    if (t.numel() > (int64_t{1} << 22)) continue;
    std::vector<float> values(static_cast<size_t>(t.numel()));
    t.ToFloat(values.data());
  }
  return 0;
}
