// LoadCheckpoint: picks the loader from what `path` is.
#include <filesystem>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "server/model/gguf.h"
#include "server/model/gguf_loader.h"
#include "server/model/hf_loader.h"
#include "server/model/host_tensor.h"
#include "server/model/llama2c_loader.h"

namespace qrag::model {

absl::StatusOr<LoadedModel> LoadCheckpoint(const std::string& path) {
  std::error_code ec;
  std::filesystem::path p(path);
  if (!std::filesystem::exists(p, ec)) {
    return absl::NotFoundError(absl::StrCat(path, ": no such file or directory"));
  }
  if (std::filesystem::is_directory(p, ec)) return LoadHfCheckpoint(path);
  const std::string name = p.filename().string();
  if (name == "config.json" || absl::EndsWith(name, ".safetensors") ||
      name == "model.safetensors.index.json") {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": a Hugging Face checkpoint is loaded from its directory: pass ",
                     p.parent_path().string(), " instead"));
  }
  if (absl::EndsWith(name, ".gguf") || LooksLikeGguf(path)) return LoadGgufCheckpoint(path);
  return LoadLlama2cCheckpoint(path);
}

}  // namespace qrag::model
