#include "tests/test_util.h"

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>

namespace qrag::testing {

std::string SharedDir() {
  if (const char* env = std::getenv("QRAG_SHARED_DIR"); env != nullptr && *env != '\0') return env;
  std::filesystem::path p = std::filesystem::path(QRAG_SOURCE_DIR).parent_path() / "shared";
  std::error_code ec;
  if (std::filesystem::is_directory(p, ec)) return std::filesystem::canonical(p, ec).string();
  return "";
}

std::optional<std::string> SharedPath(const std::string& relative) {
  std::string dir = SharedDir();
  if (dir.empty()) return std::nullopt;
  std::filesystem::path p = std::filesystem::path(dir) / relative;
  std::error_code ec;
  if (!std::filesystem::exists(p, ec)) return std::nullopt;
  return p.string();
}

std::optional<std::string> CachedModelPath(const char* env_var, const std::string& relative,
                                           const std::string& probe) {
  std::string path;
  if (const char* env = std::getenv(env_var); env != nullptr && *env != '\0') {
    path = env;
  } else if (const char* cache = std::getenv("QRAG_CACHE_DIR"); cache != nullptr && *cache != '\0') {
    path = std::string(cache) + "/" + relative;
  } else if (const char* home = std::getenv("HOME"); home != nullptr) {
    path = std::string(home) + "/.cache/qrag/" + relative;
  }
  if (path.empty() || !std::filesystem::exists(probe.empty() ? path : path + "/" + probe)) return std::nullopt;
  return path;
}

bool RequireShared() {
  const char* env = std::getenv("QRAG_REQUIRE_SHARED");
  return env != nullptr && std::string(env) == "1";
}

TempDir::TempDir() {
  std::random_device rd;
  std::filesystem::path base = std::filesystem::temp_directory_path();
  for (int attempt = 0; attempt < 100; ++attempt) {
    std::filesystem::path p = base / ("qrag-test-" + std::to_string(rd()));
    std::error_code ec;
    if (std::filesystem::create_directory(p, ec)) {
      path_ = p.string();
      return;
    }
  }
  std::abort();
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

}  // namespace qrag::testing
