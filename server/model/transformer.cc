#include "server/model/transformer.h"

#include <algorithm>
#include <cmath>
#include <numbers>

#include "absl/strings/str_cat.h"
#include "server/common/status.h"

namespace qrag::model {

using backend::AttentionShape;
using backend::DeviceBuffer;
using backend::Precision;
using backend::Weight;

struct Transformer::Layer {
  DeviceBuffer attn_norm, ffn_norm;
  Weight wq, wk, wv, wo, gate, up, down;
};

int64_t OpCounts::total() const {
  int64_t t = 0;
  for (int64_t v : by_precision) t += v;
  return t;
}

std::vector<float> RopeInverseFrequencies(const ModelConfig& c) {
  const int half = c.head_dim / 2;
  std::vector<float> inv(half);
  for (int i = 0; i < half; ++i) {
    // As llama2.c run.c and HF: 1 / theta^(2i / head_dim) in fp32.
    inv[i] = 1.0f / std::pow(c.rope_theta, static_cast<float>(2 * i) / static_cast<float>(c.head_dim));
  }
  const RopeScaling& s = c.rope_scaling;
  if (s.type == RopeScaling::Type::kLinear) {
    for (float& f : inv) f /= s.factor;
  } else if (s.type == RopeScaling::Type::kFrequencyFactors) {
    // ggml_rope_ext: theta_i = pos * base^(-2i/d) / freq_factors[i].
    for (int i = 0; i < half; ++i) inv[i] /= s.freq_factors[i];
  } else if (s.type == RopeScaling::Type::kLlama3) {
    // transformers' _compute_llama3_parameters (Llama 3.1 rope scaling).
    const double old_ctx = s.original_max_position_embeddings;
    const double low_wavelen = old_ctx / s.low_freq_factor, high_wavelen = old_ctx / s.high_freq_factor;
    for (float& f : inv) {
      const double wavelen = 2 * std::numbers::pi / f;
      if (wavelen < high_wavelen) continue;  // high frequencies unchanged
      if (wavelen > low_wavelen) {
        f = static_cast<float>(f / s.factor);
      } else {
        const double smooth = (old_ctx / wavelen - s.low_freq_factor) / (s.high_freq_factor - s.low_freq_factor);
        f = static_cast<float>((1 - smooth) * f / s.factor + smooth * f);
      }
    }
  }
  return inv;
}

Transformer::Transformer(const ModelConfig& config, backend::Backend* backend, const TransformerOptions& options)
    : config_(config), backend_(backend), options_(options) {}

Transformer::~Transformer() = default;

Precision DefaultClassifierPrecision(Precision precision) {
  return precision == Precision::kW4 ? Precision::kInt8 : precision;
}

namespace {

absl::StatusOr<DeviceBuffer> UploadVector(backend::Backend* b, const std::vector<float>& v) {
  QRAG_ASSIGN_OR_RETURN(DeviceBuffer buf, b->Allocate(v.size() * sizeof(float)));
  QRAG_RETURN_IF_ERROR(b->CopyToDevice(v.data(), v.size() * sizeof(float), buf.data()));
  return buf;
}

int64_t WeightBytes(const Weight& w) {
  int64_t bytes = static_cast<int64_t>(backend::PrecisionWeightBytes(w.precision) * w.n * w.k);
  if (!w.scales.empty()) bytes += static_cast<int64_t>(w.scales.bytes());
  if (!w.mins.empty()) bytes += static_cast<int64_t>(w.mins.bytes());
  if (!w.bias.empty()) bytes += w.n * 4;
  return bytes;
}

}  // namespace

absl::StatusOr<std::unique_ptr<Transformer>> Transformer::Create(const LoadedModel& model, backend::Backend* backend,
                                                                 const TransformerOptions& options) {
  const ModelConfig& c = model.config;
  QRAG_RETURN_IF_ERROR(ValidateModelConfig(c, model.source));
  std::unique_ptr<Transformer> t(new Transformer(c, backend, options));
  const int64_t dim = c.dim, q_dim = c.q_dim(), kv_dim = c.kv_dim(), hidden = c.hidden_dim;

  auto load_vector = [&](const std::string& name, int64_t n) -> absl::StatusOr<DeviceBuffer> {
    QRAG_ASSIGN_OR_RETURN(const HostTensor* h, model.Get(name, {n}));
    return UploadVector(backend, h->ToFloatVector());
  };
  const Precision classifier_precision =
      options.classifier_precision.value_or(DefaultClassifierPrecision(options.precision));
  auto load_linear = [&](const std::string& name, int64_t n, int64_t k, const std::string& bias_name,
                         Precision precision) -> absl::StatusOr<Weight> {
    QRAG_ASSIGN_OR_RETURN(const HostTensor* h, model.Get(name, {n, k}));
    std::vector<float> bias;
    if (!bias_name.empty()) {
      QRAG_ASSIGN_OR_RETURN(const HostTensor* b, model.Get(bias_name, {n}));
      bias = b->ToFloatVector();
    }
    Weight out;
    if (auto q = model.w4_weights.find(name); q != model.w4_weights.end() && precision == Precision::kW4) {
      // A w4 checkpoint: serve its stored codes (Get above checked the shape of their fp32 view).
      QRAG_ASSIGN_OR_RETURN(out, backend->UploadW4Weight(q->second, bias.empty() ? nullptr : bias.data()));
    } else {
      std::vector<float> w = h->ToFloatVector();
      QRAG_ASSIGN_OR_RETURN(out, backend->UploadWeight(w.data(), n, k, precision, bias.empty() ? nullptr : bias.data()));
    }
    t->weight_bytes_per_token_ += WeightBytes(out);
    return out;
  };

  {
    QRAG_ASSIGN_OR_RETURN(const HostTensor* emb, model.Get("model.embed_tokens.weight", {c.vocab_size, dim}));
    std::vector<float> table = emb->ToFloatVector();
    QRAG_ASSIGN_OR_RETURN(t->embedding_, UploadVector(backend, table));
    if (c.tie_embeddings) {
      QRAG_ASSIGN_OR_RETURN(t->classifier_,
                            backend->UploadWeight(table.data(), c.vocab_size, dim, classifier_precision, nullptr));
      t->weight_bytes_per_token_ += WeightBytes(t->classifier_);
    }
  }
  if (!c.tie_embeddings) {
    QRAG_ASSIGN_OR_RETURN(t->classifier_, load_linear("lm_head.weight", c.vocab_size, dim, "", classifier_precision));
  }
  QRAG_ASSIGN_OR_RETURN(t->final_norm_, load_vector("model.norm.weight", dim));
  t->weight_bytes_per_token_ += dim * 4;
  QRAG_ASSIGN_OR_RETURN(t->inv_freq_, UploadVector(backend, RopeInverseFrequencies(c)));

  for (int l = 0; l < c.n_layers; ++l) {
    const std::string p = absl::StrCat("model.layers.", l, ".");
    auto layer = std::make_unique<Layer>();
    const bool bias = c.qkv_bias;
    QRAG_ASSIGN_OR_RETURN(layer->attn_norm, load_vector(p + "input_layernorm.weight", dim));
    QRAG_ASSIGN_OR_RETURN(layer->ffn_norm, load_vector(p + "post_attention_layernorm.weight", dim));
    QRAG_ASSIGN_OR_RETURN(layer->wq, load_linear(p + "self_attn.q_proj.weight", q_dim, dim,
                                                 bias ? p + "self_attn.q_proj.bias" : "", options.precision));
    QRAG_ASSIGN_OR_RETURN(layer->wk, load_linear(p + "self_attn.k_proj.weight", kv_dim, dim,
                                                 bias ? p + "self_attn.k_proj.bias" : "", options.precision));
    QRAG_ASSIGN_OR_RETURN(layer->wv, load_linear(p + "self_attn.v_proj.weight", kv_dim, dim,
                                                 bias ? p + "self_attn.v_proj.bias" : "", options.precision));
    QRAG_ASSIGN_OR_RETURN(layer->wo, load_linear(p + "self_attn.o_proj.weight", dim, q_dim, "", options.precision));
    QRAG_ASSIGN_OR_RETURN(layer->gate, load_linear(p + "mlp.gate_proj.weight", hidden, dim, "", options.precision));
    QRAG_ASSIGN_OR_RETURN(layer->up, load_linear(p + "mlp.up_proj.weight", hidden, dim, "", options.precision));
    QRAG_ASSIGN_OR_RETURN(layer->down, load_linear(p + "mlp.down_proj.weight", dim, hidden, "", options.precision));
    t->weight_bytes_per_token_ += 2 * dim * 4;
    t->layers_.push_back(std::move(layer));
  }
  QRAG_RETURN_IF_ERROR(backend->Synchronize());
  return t;
}

absl::Status Transformer::EnsureScratch(int tokens) {
  if (tokens <= scratch_tokens_) return absl::OkStatus();
  const size_t n = static_cast<size_t>(tokens);
  const size_t f = sizeof(float);
  QRAG_ASSIGN_OR_RETURN(x_, backend_->Allocate(n * config_.dim * f));
  QRAG_ASSIGN_OR_RETURN(xb_, backend_->Allocate(n * config_.dim * f));
  QRAG_ASSIGN_OR_RETURN(q_, backend_->Allocate(n * config_.q_dim() * f));
  QRAG_ASSIGN_OR_RETURN(k_, backend_->Allocate(n * config_.kv_dim() * f));
  QRAG_ASSIGN_OR_RETURN(v_, backend_->Allocate(n * config_.kv_dim() * f));
  QRAG_ASSIGN_OR_RETURN(att_, backend_->Allocate(n * std::max(config_.q_dim(), config_.dim) * f));
  QRAG_ASSIGN_OR_RETURN(gate_, backend_->Allocate(n * config_.hidden_dim * f));
  QRAG_ASSIGN_OR_RETURN(up_, backend_->Allocate(n * config_.hidden_dim * f));
  QRAG_ASSIGN_OR_RETURN(logits_, backend_->Allocate(n * config_.vocab_size * f));
  scratch_tokens_ = tokens;
  return absl::OkStatus();
}

absl::Status Transformer::Forward(absl::Span<const int32_t> tokens, const backend::AttentionBatch& attention,
                                  absl::Span<const int32_t> logits_for, KvCache& cache, float* logits_out) {
  const int n = static_cast<int>(tokens.size());
  if (n == 0) return absl::InvalidArgumentError("forward: empty batch");
  if (attention.positions.size() != tokens.size() || attention.token_seq.size() != tokens.size()) {
    return absl::InvalidArgumentError("forward: positions/token_seq must have one entry per token");
  }
  for (int i = 0; i < n; ++i) {
    if (tokens[i] < 0 || tokens[i] >= config_.vocab_size) {
      return absl::InvalidArgumentError(
          absl::StrCat("forward: token id ", tokens[i], " out of range [0, ", config_.vocab_size, ")"));
    }
    if (attention.positions[i] < 0 || attention.positions[i] >= config_.max_seq_len) {
      return absl::OutOfRangeError(absl::StrCat("forward: position ", attention.positions[i],
                                                " is past the context length ", config_.max_seq_len));
    }
  }
  if (logits_for.size() > tokens.size()) {
    return absl::InvalidArgumentError("forward: more logits rows than tokens");
  }
  for (int32_t r : logits_for) {
    if (r < 0 || r >= n) return absl::InvalidArgumentError(absl::StrCat("forward: logits row ", r, " not in batch"));
  }
  if (cache.num_layers() != config_.n_layers) {
    return absl::InvalidArgumentError("forward: kv cache was made for another model");
  }
  QRAG_RETURN_IF_ERROR(EnsureScratch(n));

  backend::Backend& b = *backend_;
  const ModelConfig& c = config_;
  const AttentionShape shape{c.n_heads, c.n_kv_heads, c.head_dim};
  const auto pairing = c.rope_style == RopeStyle::kInterleaved ? backend::RopePairing::kInterleaved
                                                               : backend::RopePairing::kRotateHalf;
  float* x = x_.as<float>();
  float* xb = xb_.as<float>();
  // Exact ops of this step (forward_stats.h): GEMM rows of every token (all GEMMs but the classifier) and
  // of the logits rows go to their sequences; attention in proportion to the keys each sequence attends to.
  const int num_seqs = static_cast<int>(attention.sequences.size());
  ForwardStats step;
  step.Reset(num_seqs);
  std::vector<int64_t> token_rows(num_seqs, 0), logits_rows(num_seqs, 0), attended(num_seqs, 0);
  for (int i = 0; i < n; ++i) {
    const int s = attention.token_seq[i];
    if (s < 0 || s >= num_seqs) {
      return absl::InvalidArgumentError(absl::StrCat("forward: token ", i, " names sequence ", s, " of ", num_seqs));
    }
    const int32_t pos = attention.positions[i];
    const int32_t start = attention.sliding_window > 0 ? std::max(0, pos - attention.sliding_window + 1) : 0;
    ++token_rows[s];
    attended[s] += pos - start + 1;
  }
  for (int32_t r : logits_for) ++logits_rows[attention.token_seq[r]];
  auto count_gemm = [&](const backend::GemmStats& s, int m, const std::vector<int64_t>& rows_per_seq) {
    ops_.by_precision[static_cast<int>(s.precision)] += s.ops;
    step.ops_by_precision[static_cast<int>(s.precision)] += s.ops;
    const int64_t per_row = s.ops / m;  // 2*N*K: every row of a GEMM does the same work
    for (int q = 0; q < num_seqs; ++q) step.ops_per_sequence[q] += per_row * rows_per_seq[q];
  };
  auto gemm = [&](const float* in, int m, const Weight& w, float* out) {
    count_gemm(b.Gemm(in, m, w, out), m, token_rows);
  };

  b.Embed(embedding_.as<float>(), c.dim, tokens, x);
  for (int l = 0; l < c.n_layers; ++l) {
    const Layer& L = *layers_[l];
    b.RmsNorm(x, L.attn_norm.as<float>(), n, c.dim, c.norm_eps, xb);
    gemm(xb, n, L.wq, q_.as<float>());
    gemm(xb, n, L.wk, k_.as<float>());
    gemm(xb, n, L.wv, v_.as<float>());
    b.Rope(q_.as<float>(), k_.as<float>(), attention.positions, shape, inv_freq_.as<float>(), pairing);
    b.KvWrite(k_.as<float>(), v_.as<float>(), attention, shape, cache.layer(l));
    const int64_t attention_ops = b.Attention(q_.as<float>(), cache.layer(l), attention, shape, att_.as<float>());
    ops_.by_precision[static_cast<int>(Precision::kF32)] += attention_ops;
    step.ops_by_precision[static_cast<int>(Precision::kF32)] += attention_ops;
    AddProportionalShares(attention_ops, attended, absl::MakeSpan(step.ops_per_sequence));
    gemm(att_.as<float>(), n, L.wo, xb);
    b.Add(x, xb, static_cast<int64_t>(n) * c.dim);
    b.RmsNorm(x, L.ffn_norm.as<float>(), n, c.dim, c.norm_eps, xb);
    gemm(xb, n, L.gate, gate_.as<float>());
    gemm(xb, n, L.up, up_.as<float>());
    b.SiluMul(gate_.as<float>(), up_.as<float>(), static_cast<int64_t>(n) * c.hidden_dim, gate_.as<float>());
    gemm(gate_.as<float>(), n, L.down, xb);
    b.Add(x, xb, static_cast<int64_t>(n) * c.dim);
  }
  if (logits_for.empty()) {
    QRAG_RETURN_IF_ERROR(b.Synchronize());
    last_forward_ = std::move(step);
    return absl::OkStatus();
  }
  // Gather the rows that need logits (Embed is a row gather), then norm and classify only those.
  const int rows = static_cast<int>(logits_for.size());
  b.Embed(x, c.dim, logits_for, xb);
  b.RmsNorm(xb, final_norm_.as<float>(), rows, c.dim, c.norm_eps, xb);
  count_gemm(b.Gemm(xb, rows, classifier_, logits_.as<float>()), rows, logits_rows);
  QRAG_RETURN_IF_ERROR(b.CopyToHost(logits_.as<float>(), static_cast<size_t>(rows) * c.vocab_size * sizeof(float),
                                    logits_out));
  QRAG_RETURN_IF_ERROR(b.Synchronize());
  last_forward_ = std::move(step);
  return absl::OkStatus();
}

}  // namespace qrag::model
