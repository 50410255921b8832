// The safetensors reader (server/model/safetensors.h) on arbitrary files: the header JSON, dtypes, shapes and
// data offsets. Every tensor it accepts must be readable in full (ASan checks the views stay in the file).
#include <cstdint>
#include <vector>

#include "server/model/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qrag;
  const std::string& path = fuzz::WriteScratchFile(fuzz::AsText(data, size), ".safetensors");
  absl::StatusOr<model::SafetensorsFile> file = model::SafetensorsFile::Open(path);
  if (!file.ok()) {
    fuzz::CheckInputError(file.status(), "SafetensorsFile::Open");
    return 0;
  }
  for (const model::SafetensorsTensorInfo& info : file->tensors()) {
    absl::StatusOr<model::HostTensor> t = file->ToHostTensor(info);
    if (!t.ok()) {
      fuzz::CheckInputError(t.status(), "ToHostTensor");
      continue;
    }
    if (t->numel() > (int64_t{1} << 22)) continue;  // valid but large: reading it proves nothing more
    std::vector<float> values(static_cast<size_t>(t->numel()));
    t->ToFloat(values.data());
  }
  return 0;
}
