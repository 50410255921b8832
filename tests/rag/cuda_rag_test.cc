// RAG on the GPU (ctest label `gpu`; skipped without one, and without the MiniLM weights): the same collection
// served by the real all-MiniLM-L6-v2 encoder and the exact index on CUDA backends and on CPU backends. The
// embeddings agree to cosine >= 0.99999, and every search mode returns the same documents in the same order
// with cosines within 1e-4 (fp32: only the GEMMs' summation order differs).
#include <cmath>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "server/backend/cpu/cpu_backend.h"
#include "server/backend/registry.h"
#include "server/rag/collections.h"
#include "tests/backend/gpu_test_util.h"
#include "tests/model/minilm_fixture.h"
#include "tests/test_util.h"

namespace qrag::rag {
namespace {

struct Side {
  std::unique_ptr<backend::Backend> encoder_backend, index_backend;
  std::unique_ptr<model::BertEncoder> encoder;
  std::unique_ptr<Collections> collections;
};

Side Make(backend::Device device, const std::string& minilm, const std::string& data_dir) {
  Side s;
  backend::BackendOptions bo;
  bo.device = device;
  auto e = backend::CreateBackend(bo);
  auto i = backend::CreateBackend(bo);
  EXPECT_TRUE(e.ok() && i.ok()) << e.status() << " " << i.status();
  if (!e.ok() || !i.ok()) return s;
  s.encoder_backend = std::move(*e);
  s.index_backend = std::move(*i);
  auto enc = model::BertEncoder::Load(minilm, s.encoder_backend.get(), {});
  EXPECT_TRUE(enc.ok()) << enc.status();
  if (!enc.ok()) return s;
  s.encoder = std::move(*enc);
  CollectionsOptions o;
  o.data_dir = data_dir;
  auto c = Collections::Open(o, s.encoder.get(), s.index_backend.get());
  EXPECT_TRUE(c.ok()) << c.status();
  if (c.ok()) s.collections = std::move(*c);
  return s;
}

TEST(CudaRag, EmbeddingsAndEverySearchModeMatchTheCpu) {
  QRAG_REQUIRE_GPU();
  QRAG_REQUIRE_MINILM(minilm);
  ::qrag::testing::TempDir tmp;
  Side cpu = Make(backend::Device::kCpu, minilm, tmp.Join("cpu"));
  Side gpu = Make(backend::Device::kCuda, minilm, tmp.Join("gpu"));
  ASSERT_NE(cpu.collections, nullptr);
  ASSERT_NE(gpu.collections, nullptr);
  EXPECT_EQ(gpu.encoder_backend->name(), "cuda");
  const std::vector<DocumentInput> docs = {
      {"cats", "Cats are small domesticated carnivorous mammals that purr and hunt mice.", {}},
      {"rust", "Rust is a systems programming language focused on memory safety without garbage collection.", {}},
      {"paris", "Paris is the capital city of France, known for the Eiffel Tower.", {}},
      {"fault", "Fault code QX7731 on the dishwasher means the drain pump is blocked.", {}},
      {"tea", "Green tea is steeped at 80 degrees for about two minutes.", {}},
  };
  for (Side* s : {&cpu, &gpu}) {
    ASSERT_TRUE(s->collections->Create("kb", "", {32, 4}).ok());
    ASSERT_TRUE(s->collections->Ingest("kb", docs).ok());
  }
  std::vector<std::string> texts;
  for (const auto& d : docs) texts.push_back(d.text);
  auto ec = cpu.collections->Embed(texts), eg = gpu.collections->Embed(texts);
  ASSERT_TRUE(ec.ok() && eg.ok());
  ASSERT_EQ(ec->size(), eg->size());
  const size_t dim = ec->size() / texts.size();
  for (size_t t = 0; t < texts.size(); ++t) {
    double dot = 0, na = 0, nb = 0;
    for (size_t k = 0; k < dim; ++k) {
      const double a = (*ec)[t * dim + k], b = (*eg)[t * dim + k];
      dot += a * b;
      na += a * a;
      nb += b * b;
    }
    EXPECT_GE(dot / std::sqrt(na * nb), 0.99999) << texts[t];
  }
  for (SearchMode mode : {SearchMode::kDense, SearchMode::kBm25, SearchMode::kHybrid}) {
    for (const std::string q : {"Which language prevents memory bugs?", "what does QX7731 mean", "tea"}) {
      auto a = cpu.collections->Retrieve("kb", q, 5, -1, {}, nullptr, {.mode = mode});
      auto b = gpu.collections->Retrieve("kb", q, 5, -1, {}, nullptr, {.mode = mode});
      ASSERT_TRUE(a.ok() && b.ok()) << a.status() << " " << b.status();
      ASSERT_EQ(a->size(), b->size()) << SearchModeName(mode) << " " << q;
      for (size_t i = 0; i < a->size(); ++i) {
        EXPECT_EQ((*a)[i].chunk.document_id, (*b)[i].chunk.document_id) << SearchModeName(mode) << " " << q;
        EXPECT_NEAR((*a)[i].score, (*b)[i].score, 1e-4) << SearchModeName(mode) << " " << q;
      }
    }
  }
}

}  // namespace
}  // namespace qrag::rag
