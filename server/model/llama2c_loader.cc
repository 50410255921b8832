#include "server/model/llama2c_loader.h"

#include <cstring>
#include <fstream>
#include <limits>
#include <vector>

#include "absl/strings/str_cat.h"
#include "server/common/mapped_file.h"
#include "server/common/status.h"

namespace qrag::model {
namespace {

constexpr uint32_t kMagic = 0x616b3432;  // "ak42"
constexpr size_t kVersionedHeaderBytes = 256;

struct Params {
  int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
};

absl::Status Invalid(const std::string& path, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(path, ": invalid llama2.c checkpoint: ", what));
}

// Reads the file sequentially, refusing to run past its end.
class Cursor {
 public:
  Cursor(std::shared_ptr<const MappedFile> file, size_t offset) : file_(std::move(file)), offset_(offset) {}

  absl::StatusOr<const uint8_t*> Take(uint64_t bytes, const std::string& what) {
    if (bytes > file_->size() || offset_ > file_->size() - bytes) {
      return Invalid(file_->path(),
                     absl::StrCat("file ends inside ", what, " (needs ", bytes, " bytes at offset ", offset_,
                                  ", file has ", file_->size(), "): truncated or header inconsistent"));
    }
    const uint8_t* p = file_->data() + offset_;
    offset_ += bytes;
    return p;
  }
  size_t offset() const { return offset_; }

 private:
  std::shared_ptr<const MappedFile> file_;
  size_t offset_;
};

class Builder {
 public:
  Builder(std::shared_ptr<const MappedFile> file, LoadedModel* model) : file_(std::move(file)), model_(model) {}

  // A zero-copy fp32 view.
  void AddView(const std::string& name, std::vector<int64_t> shape, const uint8_t* data) {
    HostTensor t;
    t.dtype = HostDType::kF32;
    t.shape = std::move(shape);
    t.data = data;
    t.owner = file_;
    t.file = file_->path();
    model_->tensors[name] = std::move(t);
  }

  // An owned fp32 tensor.
  void AddOwned(const std::string& name, std::vector<int64_t> shape, std::vector<float> values) {
    auto buf = std::make_shared<std::vector<float>>(std::move(values));
    HostTensor t;
    t.dtype = HostDType::kF32;
    t.shape = std::move(shape);
    t.data = reinterpret_cast<const uint8_t*>(buf->data());
    t.owner = buf;
    t.file = file_->path();
    model_->tensors[name] = std::move(t);
  }

 private:
  std::shared_ptr<const MappedFile> file_;
  LoadedModel* model_;
};

std::string LayerName(int layer, const char* suffix) {
  return absl::StrCat("model.layers.", layer, ".", suffix);
}

// The per-layer matrices in file order, with their HF names and [out, in] shapes.
struct MatrixKind {
  const char* suffix;
  int64_t rows, cols;
};

std::vector<MatrixKind> LayerMatrices(const Params& p) {
  const int64_t head = p.dim / p.n_heads;
  const int64_t q = static_cast<int64_t>(p.n_heads) * head, kv = static_cast<int64_t>(p.n_kv_heads) * head;
  return {
      {"self_attn.q_proj.weight", q, p.dim},        {"self_attn.k_proj.weight", kv, p.dim},
      {"self_attn.v_proj.weight", kv, p.dim},       {"self_attn.o_proj.weight", p.dim, q},
      {"mlp.gate_proj.weight", p.hidden_dim, p.dim}, {"mlp.down_proj.weight", p.dim, p.hidden_dim},
      {"mlp.up_proj.weight", p.hidden_dim, p.dim},
  };
}

absl::Status CheckParams(const Params& p, const std::string& path) {
  ModelConfig c;
  c.dim = p.dim;
  c.hidden_dim = p.hidden_dim;
  c.n_layers = p.n_layers;
  c.n_heads = p.n_heads;
  c.n_kv_heads = p.n_kv_heads;
  c.vocab_size = p.vocab_size;
  c.max_seq_len = p.seq_len;
  c.head_dim = p.n_heads > 0 && p.dim % p.n_heads == 0 ? p.dim / p.n_heads : 0;
  if (p.n_heads > 0 && p.dim % p.n_heads != 0) {
    return Invalid(path, absl::StrCat("dim ", p.dim, " is not a multiple of n_heads ", p.n_heads));
  }
  return ValidateModelConfig(c, path);
}

ModelConfig ConfigFrom(const Params& p, bool shared) {
  ModelConfig c;
  c.architecture = "llama";
  c.dim = p.dim;
  c.hidden_dim = p.hidden_dim;
  c.n_layers = p.n_layers;
  c.n_heads = p.n_heads;
  c.n_kv_heads = p.n_kv_heads;
  c.head_dim = p.dim / p.n_heads;
  c.vocab_size = p.vocab_size;
  c.max_seq_len = p.seq_len;
  c.norm_eps = 1e-5f;  // run.c's rmsnorm
  c.rope_theta = 10000.0f;
  c.rope_style = RopeStyle::kInterleaved;
  c.tie_embeddings = shared;
  c.bos_token_id = 1;
  c.eos_token_ids = {2};
  return c;
}

uint64_t ExpectedBytesFp32(const Params& p, bool shared, bool legacy) {
  const uint64_t dim = p.dim, hidden = p.hidden_dim, layers = p.n_layers, vocab = p.vocab_size;
  const uint64_t head = dim / p.n_heads, q = p.n_heads * head, kv = p.n_kv_heads * head;
  uint64_t floats = vocab * dim + layers * (2 * dim + dim * q + 2 * dim * kv + q * dim + 3 * dim * hidden) + dim;
  if (legacy) floats += 2 * static_cast<uint64_t>(p.seq_len) * (head / 2);
  if (!shared) floats += vocab * dim;
  return floats * 4;
}

absl::Status LoadFp32Body(Cursor& cur, Builder& b, const Params& p, bool shared, bool legacy) {
  const int64_t dim = p.dim;
  auto matrices = LayerMatrices(p);
  auto take_matrix_all_layers = [&](const MatrixKind& m) -> absl::Status {
    for (int l = 0; l < p.n_layers; ++l) {
      QRAG_ASSIGN_OR_RETURN(const uint8_t* d, cur.Take(static_cast<uint64_t>(m.rows * m.cols) * 4, m.suffix));
      b.AddView(LayerName(l, m.suffix), {m.rows, m.cols}, d);
    }
    return absl::OkStatus();
  };
  auto take_norms = [&](const char* suffix) -> absl::Status {
    for (int l = 0; l < p.n_layers; ++l) {
      QRAG_ASSIGN_OR_RETURN(const uint8_t* d, cur.Take(dim * 4, suffix));
      b.AddView(LayerName(l, suffix), {dim}, d);
    }
    return absl::OkStatus();
  };
  if (legacy) {
    QRAG_ASSIGN_OR_RETURN(const uint8_t* emb, cur.Take(static_cast<uint64_t>(p.vocab_size) * dim * 4, "token_embedding"));
    b.AddView("model.embed_tokens.weight", {p.vocab_size, dim}, emb);
    QRAG_RETURN_IF_ERROR(take_norms("input_layernorm.weight"));
    for (int i = 0; i < 4; ++i) QRAG_RETURN_IF_ERROR(take_matrix_all_layers(matrices[i]));  // wq wk wv wo
    QRAG_RETURN_IF_ERROR(take_norms("post_attention_layernorm.weight"));
    for (int i = 4; i < 7; ++i) QRAG_RETURN_IF_ERROR(take_matrix_all_layers(matrices[i]));  // w1 w2 w3
    QRAG_ASSIGN_OR_RETURN(const uint8_t* fin, cur.Take(dim * 4, "rms_final"));
    b.AddView("model.norm.weight", {dim}, fin);
    const uint64_t rope_table = static_cast<uint64_t>(p.seq_len) * (dim / p.n_heads / 2) * 4;
    QRAG_RETURN_IF_ERROR(cur.Take(rope_table, "freq_cis_real").status());
    QRAG_RETURN_IF_ERROR(cur.Take(rope_table, "freq_cis_imag").status());
  } else {
    QRAG_RETURN_IF_ERROR(take_norms("input_layernorm.weight"));
    QRAG_RETURN_IF_ERROR(take_norms("post_attention_layernorm.weight"));
    QRAG_ASSIGN_OR_RETURN(const uint8_t* fin, cur.Take(dim * 4, "final norm"));
    b.AddView("model.norm.weight", {dim}, fin);
    QRAG_ASSIGN_OR_RETURN(const uint8_t* emb, cur.Take(static_cast<uint64_t>(p.vocab_size) * dim * 4, "token embedding"));
    b.AddView("model.embed_tokens.weight", {p.vocab_size, dim}, emb);
    for (const auto& m : matrices) QRAG_RETURN_IF_ERROR(take_matrix_all_layers(m));
  }
  if (!shared) {
    QRAG_ASSIGN_OR_RETURN(const uint8_t* cls, cur.Take(static_cast<uint64_t>(p.vocab_size) * dim * 4, "classifier"));
    b.AddView("lm_head.weight", {p.vocab_size, dim}, cls);
  }
  return absl::OkStatus();
}

// export.py version 2: Q8_0, symmetric int8 per group of `group` consecutive values.
absl::Status LoadQ8Body(Cursor& cur, Builder& b, const Params& p, bool shared, int group, const std::string& path) {
  const int64_t dim = p.dim;
  auto take_norms = [&](const char* suffix) -> absl::Status {
    for (int l = 0; l < p.n_layers; ++l) {
      QRAG_ASSIGN_OR_RETURN(const uint8_t* d, cur.Take(dim * 4, suffix));
      b.AddView(LayerName(l, suffix), {dim}, d);
    }
    return absl::OkStatus();
  };
  QRAG_RETURN_IF_ERROR(take_norms("input_layernorm.weight"));
  QRAG_RETURN_IF_ERROR(take_norms("post_attention_layernorm.weight"));
  QRAG_ASSIGN_OR_RETURN(const uint8_t* fin, cur.Take(dim * 4, "final norm"));
  b.AddView("model.norm.weight", {dim}, fin);

  auto take_q8 = [&](const std::string& name, int64_t rows, int64_t cols) -> absl::Status {
    const int64_t n = rows * cols;
    if (n % group != 0) {
      return Invalid(path, absl::StrCat(name, " has ", n, " values, not a multiple of group_size ", group));
    }
    QRAG_ASSIGN_OR_RETURN(const uint8_t* q, cur.Take(n, name));
    QRAG_ASSIGN_OR_RETURN(const uint8_t* s, cur.Take(n / group * 4, name + " scales"));
    std::vector<float> out(n);
    for (int64_t g = 0; g < n / group; ++g) {
      float scale;
      std::memcpy(&scale, s + g * 4, 4);
      for (int64_t i = g * group; i < (g + 1) * group; ++i) {
        out[i] = static_cast<float>(static_cast<int8_t>(q[i])) * scale;
      }
    }
    b.AddOwned(name, {rows, cols}, std::move(out));
    return absl::OkStatus();
  };
  QRAG_RETURN_IF_ERROR(take_q8("model.embed_tokens.weight", p.vocab_size, dim));
  for (const auto& m : LayerMatrices(p)) {
    for (int l = 0; l < p.n_layers; ++l) QRAG_RETURN_IF_ERROR(take_q8(LayerName(l, m.suffix), m.rows, m.cols));
  }
  if (!shared) QRAG_RETURN_IF_ERROR(take_q8("lm_head.weight", p.vocab_size, dim));
  return absl::OkStatus();
}

}  // namespace

bool HasLlama2cMagic(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  uint32_t magic = 0;
  in.read(reinterpret_cast<char*>(&magic), 4);
  return in.gcount() == 4 && magic == kMagic;
}

absl::StatusOr<LoadedModel> LoadLlama2cCheckpoint(const std::string& path) {
  QRAG_ASSIGN_OR_RETURN(std::shared_ptr<const MappedFile> file, MappedFile::Open(path));
  if (file->size() < 28) {
    return Invalid(path, absl::StrCat("file is ", file->size(), " bytes, shorter than any llama2.c header (28)"));
  }
  uint32_t magic;
  std::memcpy(&magic, file->data(), 4);
  Params p;
  bool shared = true;
  int version = 0;
  int group = 0;
  size_t body = 28;
  if (magic == kMagic) {
    if (file->size() < kVersionedHeaderBytes) {
      return Invalid(path, absl::StrCat("versioned header needs 256 bytes, file has ", file->size()));
    }
    std::memcpy(&version, file->data() + 4, 4);
    if (version != 1 && version != 2) {
      return Invalid(path, absl::StrCat("unsupported export version ", version, " (supported: 1 fp32, 2 Q8_0)"));
    }
    std::memcpy(&p, file->data() + 8, sizeof p);
    const uint8_t flag = file->data()[36];
    if (flag > 1) return Invalid(path, absl::StrCat("shared_classifier flag is ", int{flag}, ", expected 0 or 1"));
    shared = flag == 1;
    if (version == 2) {
      std::memcpy(&group, file->data() + 37, 4);
      if (group <= 0 || group > (1 << 20)) return Invalid(path, absl::StrCat("group_size = ", group));
    }
    body = kVersionedHeaderBytes;
  } else {
    std::memcpy(&p, file->data(), sizeof p);
    shared = p.vocab_size > 0;
    // A negative vocab_size marks a separate classifier; INT32_MIN has no positive counterpart (found by
    // fuzz_llama2c_checkpoint: negating it is undefined behaviour).
    if (p.vocab_size == std::numeric_limits<int32_t>::min()) {
      return Invalid(path, absl::StrCat("vocab_size = ", p.vocab_size));
    }
    if (p.vocab_size < 0) p.vocab_size = -p.vocab_size;
  }
  QRAG_RETURN_IF_ERROR(CheckParams(p, path));

  if (version != 2) {
    const uint64_t expected = body + ExpectedBytesFp32(p, shared, version == 0);
    if (expected != file->size()) {
      return Invalid(path, absl::StrCat("header (dim ", p.dim, ", hidden_dim ", p.hidden_dim, ", n_layers ",
                                        p.n_layers, ", n_heads ", p.n_heads, ", n_kv_heads ", p.n_kv_heads,
                                        ", vocab_size ", p.vocab_size, ", seq_len ", p.seq_len,
                                        shared ? ", shared classifier" : ", separate classifier",
                                        ") implies ", expected, " bytes but the file has ", file->size()));
    }
  }

  LoadedModel model;
  model.config = ConfigFrom(p, shared);
  model.source = path;
  Builder builder(file, &model);
  Cursor cur(file, body);
  if (version == 2) {
    QRAG_RETURN_IF_ERROR(LoadQ8Body(cur, builder, p, shared, group, path));
  } else {
    QRAG_RETURN_IF_ERROR(LoadFp32Body(cur, builder, p, shared, version == 0));
  }
  if (cur.offset() != file->size()) {
    return Invalid(path, absl::StrCat(file->size() - cur.offset(), " unexpected bytes after the last tensor"));
  }
  return model;
}

}  // namespace qrag::model
