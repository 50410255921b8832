#include "server/model/bert_encoder.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "server/common/mapped_file.h"
#include "server/common/status.h"
#include "server/model/json_util.h"
#include "server/model/safetensors.h"

namespace qrag::model {

using backend::DeviceBuffer;
using backend::Weight;

struct BertEncoder::Layer {
  Weight q, k, v, attn_out, inter, out;
  DeviceBuffer attn_ln_w, attn_ln_b, out_ln_w, out_ln_b;
};

namespace {

namespace fs = std::filesystem;

absl::StatusOr<nlohmann::json> ReadJsonFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path.string()));
  std::stringstream ss;
  ss << in.rdbuf();
  QRAG_ASSIGN_OR_RETURN(nlohmann::json j, ParseJson(ss.str(), path.string()));
  if (!j.is_object()) return absl::InvalidArgumentError(absl::StrCat(path.string(), ": not a JSON object"));
  return j;
}

absl::StatusOr<int> PositiveInt(const nlohmann::json& j, const char* key, const std::string& file) {
  if (!j.contains(key) || !j[key].is_number_integer() || j[key].get<int64_t>() <= 0 ||
      j[key].get<int64_t>() > (1 << 24)) {
    return absl::InvalidArgumentError(absl::StrCat(file, ": '", key, "' must be a positive integer"));
  }
  return j[key].get<int>();
}

// FNV-1a 64 over 8-byte words of the file: a cheap identity of the weights (not a security hash).
uint64_t Fingerprint(const MappedFile& f) {
  uint64_t h = 1469598103934665603ULL;
  const size_t words = f.size() / 8;
  for (size_t i = 0; i < words; ++i) {
    uint64_t w;
    std::memcpy(&w, f.data() + i * 8, 8);
    h = (h ^ w) * 1099511628211ULL;
  }
  for (size_t i = words * 8; i < f.size(); ++i) h = (h ^ f.data()[i]) * 1099511628211ULL;
  return h ^ f.size();
}

class TensorSource {
 public:
  TensorSource(const SafetensorsCheckpoint& ckpt, std::string prefix) : ckpt_(ckpt), prefix_(std::move(prefix)) {}

  absl::StatusOr<std::vector<float>> Get(const std::string& name, const std::vector<int64_t>& shape) const {
    QRAG_ASSIGN_OR_RETURN(HostTensor t, ckpt_.GetHostTensor(prefix_ + name));
    if (t.shape != shape) {
      std::string want, got;
      for (int64_t d : shape) absl::StrAppend(&want, want.empty() ? "" : ",", d);
      for (int64_t d : t.shape) absl::StrAppend(&got, got.empty() ? "" : ",", d);
      return absl::InvalidArgumentError(
          absl::StrCat(t.file, ": tensor ", prefix_, name, " has shape [", got, "], expected [", want, "]"));
    }
    return t.ToFloatVector();
  }

 private:
  const SafetensorsCheckpoint& ckpt_;
  std::string prefix_;
};

absl::StatusOr<DeviceBuffer> Upload(backend::Backend* b, const std::vector<float>& v) {
  QRAG_ASSIGN_OR_RETURN(DeviceBuffer buf, b->Allocate(v.size() * sizeof(float)));
  QRAG_RETURN_IF_ERROR(b->CopyToDevice(v.data(), v.size() * sizeof(float), buf.data()));
  return buf;
}

}  // namespace

BertEncoder::~BertEncoder() = default;

absl::StatusOr<std::unique_ptr<BertEncoder>> BertEncoder::Load(const std::string& dir, backend::Backend* backend,
                                                               const BertEncoderOptions& options) {
  const fs::path root(dir);
  if (!fs::is_directory(root)) return absl::NotFoundError(absl::StrCat("encoder directory not found: ", dir));
  std::unique_ptr<BertEncoder> e(new BertEncoder());
  e->backend_ = backend;
  e->options_ = options;
  if (options.max_batch_tokens <= 0) return absl::InvalidArgumentError("max_batch_tokens must be positive");

  // config.json
  const std::string config_path = (root / "config.json").string();
  QRAG_ASSIGN_OR_RETURN(nlohmann::json cj, ReadJsonFile(config_path));
  BertConfig& c = e->config_;
  QRAG_ASSIGN_OR_RETURN(c.vocab_size, PositiveInt(cj, "vocab_size", config_path));
  QRAG_ASSIGN_OR_RETURN(c.hidden_size, PositiveInt(cj, "hidden_size", config_path));
  QRAG_ASSIGN_OR_RETURN(c.num_layers, PositiveInt(cj, "num_hidden_layers", config_path));
  QRAG_ASSIGN_OR_RETURN(c.num_heads, PositiveInt(cj, "num_attention_heads", config_path));
  QRAG_ASSIGN_OR_RETURN(c.intermediate_size, PositiveInt(cj, "intermediate_size", config_path));
  QRAG_ASSIGN_OR_RETURN(c.max_position_embeddings, PositiveInt(cj, "max_position_embeddings", config_path));
  c.type_vocab_size = cj.value("type_vocab_size", 2);
  if (cj.contains("layer_norm_eps") && cj["layer_norm_eps"].is_number()) c.layer_norm_eps = cj["layer_norm_eps"].get<float>();
  if (c.hidden_size % c.num_heads != 0) {
    return absl::InvalidArgumentError(absl::StrCat(config_path, ": hidden_size ", c.hidden_size,
                                                   " is not a multiple of num_attention_heads ", c.num_heads));
  }
  const std::string act = cj.value("hidden_act", std::string("gelu"));
  if (act != "gelu") {
    return absl::UnimplementedError(absl::StrCat(config_path, ": hidden_act '", act, "' is not supported (gelu only)"));
  }
  const std::string pos_type = cj.value("position_embedding_type", std::string("absolute"));
  if (pos_type != "absolute") {
    return absl::UnimplementedError(
        absl::StrCat(config_path, ": position_embedding_type '", pos_type, "' is not supported (absolute only)"));
  }

  // sentence-transformers head.
  int max_seq = c.max_position_embeddings;
  if (fs::exists(root / "sentence_bert_config.json")) {
    QRAG_ASSIGN_OR_RETURN(nlohmann::json sj, ReadJsonFile(root / "sentence_bert_config.json"));
    if (sj.contains("max_seq_length") && sj["max_seq_length"].is_number_integer()) {
      max_seq = std::min(max_seq, sj["max_seq_length"].get<int>());
    }
  }
  if (options.max_seq_length > 0) max_seq = std::min(options.max_seq_length, c.max_position_embeddings);
  if (max_seq < 3) return absl::InvalidArgumentError(absl::StrCat(dir, ": max_seq_length ", max_seq, " is below 3"));
  e->max_seq_length_ = max_seq;
  e->normalize_ = false;
  if (fs::exists(root / "modules.json")) {
    std::ifstream in(root / "modules.json");
    std::stringstream ss;
    ss << in.rdbuf();
    QRAG_ASSIGN_OR_RETURN(nlohmann::json mj, ParseJson(ss.str(), (root / "modules.json").string()));
    if (mj.is_array()) {
      for (const auto& m : mj) {
        if (m.is_object() && m.value("type", std::string()) == "sentence_transformers.models.Normalize") e->normalize_ = true;
      }
    }
  }
  if (fs::exists(root / "1_Pooling" / "config.json")) {
    const fs::path pool_path = root / "1_Pooling" / "config.json";
    QRAG_ASSIGN_OR_RETURN(nlohmann::json pj, ReadJsonFile(pool_path));
    const bool mean = pj.value("pooling_mode_mean_tokens", false);
    const bool cls = pj.value("pooling_mode_cls_token", false);
    if (mean == cls || pj.value("pooling_mode_max_tokens", false) || pj.value("pooling_mode_mean_sqrt_len_tokens", false)) {
      return absl::UnimplementedError(
          absl::StrCat(pool_path.string(), ": exactly one of mean or CLS pooling must be on (others unsupported)"));
    }
    e->mean_pooling_ = mean;
  }

  QRAG_ASSIGN_OR_RETURN(e->tokenizer_, WordPieceTokenizer::FromDirectory(dir));
  if (e->tokenizer_->vocab_size() > c.vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat(dir, ": tokenizer has ", e->tokenizer_->vocab_size(),
                                                   " tokens, the model's vocab_size is ", c.vocab_size));
  }

  // Weights.
  const std::string weights_path = (root / "model.safetensors").string();
  QRAG_ASSIGN_OR_RETURN(SafetensorsCheckpoint ckpt, SafetensorsCheckpoint::OpenFile(weights_path));
  QRAG_ASSIGN_OR_RETURN(std::shared_ptr<const MappedFile> mapped, MappedFile::Open(weights_path));
  e->model_id_ = absl::StrFormat("%s@%016x", root.filename().empty() ? root.parent_path().filename().string()
                                                                     : root.filename().string(),
                                 Fingerprint(*mapped));
  const std::string prefix = ckpt.Find("bert.embeddings.word_embeddings.weight").info != nullptr ? "bert." : "";
  TensorSource src(ckpt, prefix);
  const int64_t h = c.hidden_size, inter = c.intermediate_size;
  QRAG_ASSIGN_OR_RETURN(std::vector<float> word, src.Get("embeddings.word_embeddings.weight", {c.vocab_size, h}));
  QRAG_ASSIGN_OR_RETURN(std::vector<float> pos,
                        src.Get("embeddings.position_embeddings.weight", {c.max_position_embeddings, h}));
  QRAG_ASSIGN_OR_RETURN(std::vector<float> type, src.Get("embeddings.token_type_embeddings.weight", {c.type_vocab_size, h}));
  type.resize(h);  // token type 0 only
  QRAG_ASSIGN_OR_RETURN(std::vector<float> ln_w, src.Get("embeddings.LayerNorm.weight", {h}));
  QRAG_ASSIGN_OR_RETURN(std::vector<float> ln_b, src.Get("embeddings.LayerNorm.bias", {h}));
  QRAG_ASSIGN_OR_RETURN(e->word_emb_, Upload(backend, word));
  QRAG_ASSIGN_OR_RETURN(e->pos_emb_, Upload(backend, pos));
  QRAG_ASSIGN_OR_RETURN(e->type_emb_, Upload(backend, type));
  QRAG_ASSIGN_OR_RETURN(e->emb_ln_w_, Upload(backend, ln_w));
  QRAG_ASSIGN_OR_RETURN(e->emb_ln_b_, Upload(backend, ln_b));

  auto linear = [&](const std::string& name, int64_t n, int64_t k) -> absl::StatusOr<Weight> {
    QRAG_ASSIGN_OR_RETURN(std::vector<float> w, src.Get(name + ".weight", {n, k}));
    QRAG_ASSIGN_OR_RETURN(std::vector<float> b, src.Get(name + ".bias", {n}));
    if (options.weight_transform) QRAG_RETURN_IF_ERROR(options.weight_transform(&w, n, k));
    return backend->UploadWeight(w.data(), n, k, options.precision, b.data());
  };
  auto vec = [&](const std::string& name) -> absl::StatusOr<DeviceBuffer> {
    QRAG_ASSIGN_OR_RETURN(std::vector<float> v, src.Get(name, {h}));
    return Upload(backend, v);
  };
  e->layers_.resize(c.num_layers);
  for (int l = 0; l < c.num_layers; ++l) {
    const std::string p = absl::StrCat("encoder.layer.", l, ".");
    Layer& L = e->layers_[l];
    QRAG_ASSIGN_OR_RETURN(L.q, linear(p + "attention.self.query", h, h));
    QRAG_ASSIGN_OR_RETURN(L.k, linear(p + "attention.self.key", h, h));
    QRAG_ASSIGN_OR_RETURN(L.v, linear(p + "attention.self.value", h, h));
    QRAG_ASSIGN_OR_RETURN(L.attn_out, linear(p + "attention.output.dense", h, h));
    QRAG_ASSIGN_OR_RETURN(L.attn_ln_w, vec(p + "attention.output.LayerNorm.weight"));
    QRAG_ASSIGN_OR_RETURN(L.attn_ln_b, vec(p + "attention.output.LayerNorm.bias"));
    QRAG_ASSIGN_OR_RETURN(L.inter, linear(p + "intermediate.dense", inter, h));
    QRAG_ASSIGN_OR_RETURN(L.out, linear(p + "output.dense", h, inter));
    QRAG_ASSIGN_OR_RETURN(L.out_ln_w, vec(p + "output.LayerNorm.weight"));
    QRAG_ASSIGN_OR_RETURN(L.out_ln_b, vec(p + "output.LayerNorm.bias"));
  }
  return e;
}

int64_t BertEncoder::ops_total() const {
  absl::MutexLock lock(&mu_);
  return ops_;
}

absl::StatusOr<std::vector<float>> BertEncoder::Embed(absl::Span<const std::string> texts, int64_t* tokens) {
  std::vector<std::vector<int32_t>> seqs(texts.size());
  int64_t count = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    auto ids = tokenizer_->Encode(texts[i]);
    if (!ids.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("text ", i, ": ", ids.status().message()));
    }
    seqs[i] = std::move(*ids);
    if (seqs[i].size() > static_cast<size_t>(max_seq_length_ - 2)) seqs[i].resize(max_seq_length_ - 2);
    count += static_cast<int64_t>(seqs[i].size()) + 2;
  }
  if (tokens != nullptr) *tokens = count;
  return EmbedTokens(seqs);
}

absl::StatusOr<std::vector<float>> BertEncoder::EmbedTokens(absl::Span<const std::vector<int32_t>> sequences) {
  for (size_t i = 0; i < sequences.size(); ++i) {
    if (sequences[i].size() > static_cast<size_t>(max_seq_length_ - 2)) {
      return absl::InvalidArgumentError(absl::StrCat("sequence ", i, " has ", sequences[i].size(),
                                                     " tokens; the encoder takes at most ", max_seq_length_ - 2));
    }
    for (int32_t id : sequences[i]) {
      if (id < 0 || id >= config_.vocab_size) {
        return absl::InvalidArgumentError(absl::StrCat("sequence ", i, ": token id ", id, " out of range"));
      }
    }
  }
  const int dim = config_.hidden_size;
  std::vector<float> out(sequences.size() * dim);
  // Longest first, so that a batch holds sequences of similar lengths; each row lands in its own place.
  std::vector<size_t> order(sequences.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return sequences[a].size() > sequences[b].size(); });
  absl::MutexLock lock(&mu_);
  std::vector<std::vector<int32_t>> batch;
  std::vector<size_t> batch_rows;
  std::vector<float> batch_out;
  size_t batch_tokens = 0;
  auto flush = [&]() -> absl::Status {
    if (batch.empty()) return absl::OkStatus();
    batch_out.resize(batch.size() * dim);
    QRAG_RETURN_IF_ERROR(Forward(batch, batch_out.data()));
    for (size_t r = 0; r < batch.size(); ++r) {
      std::copy(batch_out.begin() + r * dim, batch_out.begin() + (r + 1) * dim, out.begin() + batch_rows[r] * dim);
    }
    batch.clear();
    batch_rows.clear();
    batch_tokens = 0;
    return absl::OkStatus();
  };
  for (size_t i : order) {
    const size_t len = sequences[i].size() + 2;
    if (!batch.empty() && batch_tokens + len > static_cast<size_t>(options_.max_batch_tokens)) {
      QRAG_RETURN_IF_ERROR(flush());
    }
    std::vector<int32_t> s;
    s.reserve(len);
    s.push_back(tokenizer_->cls_id());
    s.insert(s.end(), sequences[i].begin(), sequences[i].end());
    s.push_back(tokenizer_->sep_id());
    batch.push_back(std::move(s));
    batch_rows.push_back(i);
    batch_tokens += len;
  }
  QRAG_RETURN_IF_ERROR(flush());
  return out;
}

absl::Status BertEncoder::Forward(absl::Span<const std::vector<int32_t>> seqs, float* out) {
  const BertConfig& c = config_;
  const int h = c.hidden_size;
  std::vector<int32_t> ids, positions, zeros, offsets{0};
  for (const auto& s : seqs) {
    for (size_t p = 0; p < s.size(); ++p) {
      ids.push_back(s[p]);
      positions.push_back(static_cast<int32_t>(p));
    }
    offsets.push_back(static_cast<int32_t>(ids.size()));
  }
  const int tokens = static_cast<int>(ids.size());
  zeros.assign(tokens, 0);
  backend::Backend* b = backend_;
  if (ws_.tokens < tokens) {
    ws_ = Workspace{};  // free the smaller buffers first
    const size_t row_bytes = static_cast<size_t>(tokens) * sizeof(float);
    QRAG_ASSIGN_OR_RETURN(ws_.x, b->Allocate(row_bytes * h));
    QRAG_ASSIGN_OR_RETURN(ws_.tmp, b->Allocate(row_bytes * h));
    QRAG_ASSIGN_OR_RETURN(ws_.q, b->Allocate(row_bytes * h));
    QRAG_ASSIGN_OR_RETURN(ws_.k, b->Allocate(row_bytes * h));
    QRAG_ASSIGN_OR_RETURN(ws_.v, b->Allocate(row_bytes * h));
    QRAG_ASSIGN_OR_RETURN(ws_.ff, b->Allocate(row_bytes * c.intermediate_size));
    ws_.tokens = tokens;
  }
  DeviceBuffer &x = ws_.x, &tmp = ws_.tmp, &q = ws_.q, &k = ws_.k, &v = ws_.v, &ff = ws_.ff;
  const int64_t n = static_cast<int64_t>(tokens) * h;

  b->Embed(word_emb_.as<float>(), h, ids, x.as<float>());
  b->Embed(pos_emb_.as<float>(), h, positions, tmp.as<float>());
  b->Add(x.as<float>(), tmp.as<float>(), n);
  b->Embed(type_emb_.as<float>(), h, zeros, tmp.as<float>());
  b->Add(x.as<float>(), tmp.as<float>(), n);
  b->LayerNorm(x.as<float>(), emb_ln_w_.as<float>(), emb_ln_b_.as<float>(), tokens, h, c.layer_norm_eps, x.as<float>());

  const backend::AttentionShape shape{c.num_heads, c.num_heads, h / c.num_heads};
  int64_t ops = 0;
  for (const Layer& L : layers_) {
    ops += b->Gemm(x.as<float>(), tokens, L.q, q.as<float>()).ops;
    ops += b->Gemm(x.as<float>(), tokens, L.k, k.as<float>()).ops;
    ops += b->Gemm(x.as<float>(), tokens, L.v, v.as<float>()).ops;
    ops += b->EncoderAttention(q.as<float>(), k.as<float>(), v.as<float>(), offsets, shape, tmp.as<float>());
    ops += b->Gemm(tmp.as<float>(), tokens, L.attn_out, q.as<float>()).ops;
    b->AddLayerNorm(x.as<float>(), q.as<float>(), L.attn_ln_w.as<float>(), L.attn_ln_b.as<float>(), tokens, h,
                    c.layer_norm_eps, x.as<float>());
    ops += b->Gemm(x.as<float>(), tokens, L.inter, ff.as<float>()).ops;
    b->Gelu(ff.as<float>(), static_cast<int64_t>(tokens) * c.intermediate_size, ff.as<float>());
    ops += b->Gemm(ff.as<float>(), tokens, L.out, q.as<float>()).ops;
    b->AddLayerNorm(x.as<float>(), q.as<float>(), L.out_ln_w.as<float>(), L.out_ln_b.as<float>(), tokens, h,
                    c.layer_norm_eps, x.as<float>());
  }
  std::vector<float> host(static_cast<size_t>(n));
  QRAG_RETURN_IF_ERROR(b->CopyToHost(x.data(), host.size() * sizeof(float), host.data()));
  QRAG_RETURN_IF_ERROR(b->Synchronize());
  ops_ += ops;

  for (size_t s = 0; s < seqs.size(); ++s) {
    float* o = out + s * h;
    const int first = offsets[s], last = offsets[s + 1];
    if (mean_pooling_) {
      std::vector<double> acc(h, 0.0);
      for (int t = first; t < last; ++t) {
        for (int j = 0; j < h; ++j) acc[j] += host[static_cast<size_t>(t) * h + j];
      }
      for (int j = 0; j < h; ++j) o[j] = static_cast<float>(acc[j] / (last - first));
    } else {
      std::copy(host.begin() + static_cast<size_t>(first) * h, host.begin() + static_cast<size_t>(first + 1) * h, o);
    }
    if (normalize_) {
      double ss = 0;
      for (int j = 0; j < h; ++j) ss += static_cast<double>(o[j]) * o[j];
      // torch.nn.functional.normalize: x / max(||x||, 1e-12).
      const double norm = std::max(std::sqrt(ss), 1e-12);
      for (int j = 0; j < h; ++j) o[j] = static_cast<float>(o[j] / norm);
    }
  }
  return absl::OkStatus();
}

}  // namespace qrag::model
