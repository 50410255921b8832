#include "server/model/model_config.h"

#include <cmath>


#include "absl/strings/str_cat.h"

namespace qrag::model {
namespace {

absl::Status Bad(const std::string& source, const std::string& what) {
  return absl::InvalidArgumentError(absl::StrCat(source, ": invalid model config: ", what));
}

}  // namespace

absl::Status ValidateModelConfig(const ModelConfig& c, const std::string& source) {
  // Upper bounds guard against garbage headers that would make size arithmetic overflow.
  constexpr int kMaxDim = 1 << 16, kMaxLayers = 1024, kMaxVocab = 1 << 22, kMaxSeq = 1 << 22;
  if (c.dim <= 0 || c.dim > kMaxDim) return Bad(source, absl::StrCat("dim = ", c.dim));
  if (c.hidden_dim <= 0 || c.hidden_dim > 8 * kMaxDim)
    return Bad(source, absl::StrCat("hidden_dim = ", c.hidden_dim));
  if (c.n_layers <= 0 || c.n_layers > kMaxLayers)
    return Bad(source, absl::StrCat("n_layers = ", c.n_layers));
  if (c.n_heads <= 0 || c.n_heads > c.dim) return Bad(source, absl::StrCat("n_heads = ", c.n_heads));
  if (c.n_kv_heads <= 0 || c.n_kv_heads > c.n_heads)
    return Bad(source, absl::StrCat("n_kv_heads = ", c.n_kv_heads, " (n_heads = ", c.n_heads, ")"));
  if (c.n_heads % c.n_kv_heads != 0)
    return Bad(source, absl::StrCat("n_heads = ", c.n_heads, " is not a multiple of n_kv_heads = ",
                                    c.n_kv_heads));
  if (c.head_dim <= 0 || c.head_dim % 2 != 0 || c.head_dim > 1024)
    return Bad(source, absl::StrCat("head_dim = ", c.head_dim, " (must be even and positive)"));
  if (c.vocab_size <= 0 || c.vocab_size > kMaxVocab)
    return Bad(source, absl::StrCat("vocab_size = ", c.vocab_size));
  if (c.max_seq_len <= 0 || c.max_seq_len > kMaxSeq)
    return Bad(source, absl::StrCat("max_seq_len = ", c.max_seq_len));
  if (!(c.norm_eps > 0.0f) || c.norm_eps > 1.0f) return Bad(source, absl::StrCat("norm_eps = ", c.norm_eps));
  if (!(c.rope_theta > 0.0f)) return Bad(source, absl::StrCat("rope_theta = ", c.rope_theta));
  if (c.sliding_window < 0) return Bad(source, absl::StrCat("sliding_window = ", c.sliding_window));
  if (c.rope_scaling.type != RopeScaling::Type::kNone && !(c.rope_scaling.factor > 0.0f))
    return Bad(source, absl::StrCat("rope_scaling.factor = ", c.rope_scaling.factor));
  if (c.rope_scaling.type == RopeScaling::Type::kFrequencyFactors) {
    if (c.rope_scaling.freq_factors.size() != static_cast<size_t>(c.head_dim / 2))
      return Bad(source, absl::StrCat(c.rope_scaling.freq_factors.size(), " RoPE frequency factors for head_dim ",
                                      c.head_dim, " (need head_dim / 2)"));
    for (float f : c.rope_scaling.freq_factors) {
      if (!(f > 0.0f) || !std::isfinite(f)) return Bad(source, absl::StrCat("RoPE frequency factor ", f));
    }
  }
  return absl::OkStatus();
}

}  // namespace qrag::model
