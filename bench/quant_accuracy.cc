// Accuracy of the served precisions against fp32, on real gold logits.
//
// For stories260K, the logits llama2.c's run.c computed (../shared/models/stories260K/expected/*.logits.f32)
// are the reference: each precision scores the same token sequences (teacher-forced) and is compared
// row by row: top-1 agreement, mean and max KL(fp32 || quantized), max relative logit error.
//
//   quant_accuracy [--shared DIR]      (default: $QRAG_SHARED_DIR, else ../shared beside the source tree)
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "server/backend/cpu/cpu_backend.h"
#include "server/engine/scoring.h"
#include "server/model/host_tensor.h"
#include "server/model/transformer.h"

namespace qrag {
namespace {

std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<int32_t> Ids(const std::string& path, int line_index) {
  std::istringstream in(Slurp(path));
  std::string line;
  for (int i = 0; i <= line_index; ++i) std::getline(in, line);
  if (auto c = line.find(':'); c != std::string::npos) line = line.substr(c + 1);
  std::istringstream s(line);
  std::vector<int32_t> out;
  for (int32_t id; s >> id;) out.push_back(id);
  return out;
}

int Main(int argc, char** argv) {
  std::string shared = std::getenv("QRAG_SHARED_DIR") ? std::getenv("QRAG_SHARED_DIR") : QRAG_DEFAULT_SHARED;
  if (argc == 3 && std::string(argv[1]) == "--shared") shared = argv[2];
  const std::string dir = shared + "/models/stories260K";
  auto model = model::LoadCheckpoint(dir + "/stories260K.bin");
  if (!model.ok()) {
    std::fprintf(stderr, "%s\n", model.status().ToString().c_str());
    return 1;
  }
  struct Set {
    const char* name;
    std::vector<int32_t> tokens;
    std::vector<float> gold;
  };
  std::vector<Set> sets;
  {
    std::vector<int32_t> t = Ids(dir + "/expected/greedy_t0.0_n200.tokens.txt", 0);
    t.resize(200);
    sets.push_back({"unprompted greedy (200 positions)", t, {}});
    std::vector<int32_t> p = Ids(dir + "/expected/prompted_greedy_n128.tokens.txt", 1);
    p.resize(128);
    sets.push_back({"prompted greedy (128 positions)", p, {}});
    for (auto [i, file] : {std::pair{0, "greedy_t0.0_n200.logits.f32"}, {1, "prompted_greedy_n128.logits.f32"}}) {
      std::string bytes = Slurp(dir + "/expected/" + file);
      sets[i].gold.resize(bytes.size() / 4);
      std::memcpy(sets[i].gold.data(), bytes.data(), bytes.size());
    }
  }
  std::printf("| sequence | precision | top-1 agreement | mean KL (nats) | max KL (nats) | max rel. logit error |\n");
  std::printf("|---|---|---:|---:|---:|---:|\n");
  for (const Set& set : sets) {
    if (set.gold.size() != set.tokens.size() * 512) {
      std::fprintf(stderr, "gold logits for %s have the wrong size\n", set.name);
      return 1;
    }
    for (backend::Precision p : backend::kAllPrecisions) {
      backend::CpuBackend cpu(backend::CpuBackendOptions{});
      auto t = model::Transformer::Create(*model, &cpu, model::TransformerOptions{.precision = p});
      if (!t.ok()) {
        std::fprintf(stderr, "%s\n", t.status().ToString().c_str());
        return 1;
      }
      auto logits = engine::ScoreSequence(**t, set.tokens, {});
      if (!logits.ok()) {
        std::fprintf(stderr, "%s\n", logits.status().ToString().c_str());
        return 1;
      }
      auto c = engine::CompareLogits(set.gold, *logits, 512);
      std::printf("| %s | %s | %.4f (%d/%d) | %.2e | %.2e | %.2e |\n", set.name, backend::PrecisionName(p),
                  c->top1_agreement, static_cast<int>(c->top1_agreement * c->rows + 0.5), c->rows, c->mean_kl,
                  c->max_kl, c->max_row_relative_error);
    }
  }
  return 0;
}

}  // namespace
}  // namespace qrag

int main(int argc, char** argv) { return qrag::Main(argc, argv); }
