#include "server/engine/generator.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "server/common/status.h"
#include "server/engine/request_limits.h"

namespace qrag::engine {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

Generator::Generator(model::Transformer* transformer, const model::Tokenizer* tokenizer,
                     const GeneratorOptions& options, model::KvCache cache)
    : transformer_(transformer), tokenizer_(tokenizer), options_(options), cache_(std::move(cache)) {
  for (int i = 0; i < cache_.num_blocks(); ++i) block_table_.push_back(i);
  stop_ids_ = tokenizer->eos_ids();
  for (int id : transformer->config().eos_token_ids) stop_ids_.push_back(id);
  std::sort(stop_ids_.begin(), stop_ids_.end());
  stop_ids_.erase(std::unique(stop_ids_.begin(), stop_ids_.end()), stop_ids_.end());
}

absl::StatusOr<std::unique_ptr<Generator>> Generator::Create(model::Transformer* transformer,
                                                             const model::Tokenizer* tokenizer,
                                                             const GeneratorOptions& options) {
  GeneratorOptions o = options;
  const int model_ctx = transformer->config().max_seq_len;
  if (o.context_length < 0) return absl::InvalidArgumentError("context_length must be >= 0");
  if (o.context_length == 0) o.context_length = std::min(model_ctx, 4096);
  if (o.context_length > model_ctx) {
    return absl::InvalidArgumentError(absl::StrCat("context_length ", o.context_length,
                                                   " exceeds the model's maximum ", model_ctx));
  }
  if (o.prefill_chunk <= 0 || o.block_size <= 0) {
    return absl::InvalidArgumentError("prefill_chunk and block_size must be positive");
  }
  if (tokenizer->vocab_size() > transformer->config().vocab_size) {
    return absl::InvalidArgumentError(absl::StrCat("tokenizer has ", tokenizer->vocab_size(),
                                                   " tokens but the model only ", transformer->config().vocab_size));
  }
  model::KvCacheOptions kv;
  kv.block_size = o.block_size;
  kv.num_blocks = model::KvCache::BlocksFor(o.context_length, o.block_size);
  QRAG_ASSIGN_OR_RETURN(model::KvCache cache, model::KvCache::Create(transformer->backend(), transformer->config(), kv));
  return std::unique_ptr<Generator>(new Generator(transformer, tokenizer, o, std::move(cache)));
}

absl::StatusOr<GenerateResult> Generator::Generate(const GenerateRequest& request, const TextCallback& on_text) {
  QRAG_RETURN_IF_ERROR(ValidateSamplingParams(request.sampling));
  QRAG_RETURN_IF_ERROR(CheckMaxTokens(request.max_tokens));
  GenerateResult result;
  if (!request.prompt_ids.empty()) {
    QRAG_RETURN_IF_ERROR(CheckPromptIds(request.prompt_ids, transformer_->config().vocab_size));
    result.prompt_ids = request.prompt_ids;
  } else {
    QRAG_ASSIGN_OR_RETURN(result.prompt_ids, tokenizer_->Encode(request.prompt, model::EncodeOptions{}));
  }
  const int ctx = options_.context_length;
  const int prompt_len = static_cast<int>(result.prompt_ids.size());
  if (prompt_len == 0) {
    return absl::InvalidArgumentError("prompt is empty and the tokenizer has no BOS token to start from");
  }
  // (prompt_len + max_tokens would overflow for max_tokens near INT32_MAX: CheckFitsContext never adds them.)
  QRAG_RETURN_IF_ERROR(CheckFitsContext(prompt_len, request.max_tokens, ctx));

  const int vocab = transformer_->config().vocab_size;
  std::vector<float> logits(vocab);
  std::vector<int32_t> positions, seqs;
  const backend::AttentionBatch::Sequence seq{absl::MakeConstSpan(block_table_)};
  auto step = [&](absl::Span<const int32_t> tokens, int first_pos) -> absl::Status {
    positions.resize(tokens.size());
    seqs.assign(tokens.size(), 0);
    for (size_t i = 0; i < tokens.size(); ++i) positions[i] = first_pos + static_cast<int>(i);
    backend::AttentionBatch batch;
    batch.positions = positions;
    batch.token_seq = seqs;
    batch.sequences = absl::MakeConstSpan(&seq, 1);
    batch.block_size = cache_.block_size();
    batch.sliding_window = transformer_->config().sliding_window;
    const int32_t last = static_cast<int32_t>(tokens.size()) - 1;
    return transformer_->Forward(tokens, batch, absl::MakeConstSpan(&last, 1), cache_, logits.data());
  };

  OutputOptions out_options;
  out_options.sampling = request.sampling;
  out_options.max_tokens = request.max_tokens;
  out_options.stop = request.stop;
  out_options.stop_ids = stop_ids_;
  out_options.stop_ids.insert(out_options.stop_ids.end(), request.extra_stop_ids.begin(), request.extra_stop_ids.end());
  OutputProcessor output(tokenizer_, std::move(out_options), result.prompt_ids);
  result.seed = output.seed();
  auto t0 = std::chrono::steady_clock::now();
  for (int begin = 0; begin < prompt_len; begin += options_.prefill_chunk) {
    const int len = std::min(options_.prefill_chunk, prompt_len - begin);
    QRAG_RETURN_IF_ERROR(step(absl::MakeConstSpan(result.prompt_ids).subspan(begin, len), begin));
  }
  result.prefill_seconds = SecondsSince(t0);
  auto t1 = std::chrono::steady_clock::now();

  int pos = prompt_len;
  while (true) {
    QRAG_ASSIGN_OR_RETURN(OutputProcessor::Step s, output.Next(absl::MakeSpan(logits)));
    if (!s.text.empty()) {
      result.text += s.text;
      if (on_text) on_text(s.text);
    }
    if (s.appended) result.output_ids.push_back(s.token);
    if (s.finished) {
      result.finish_reason = s.reason;
      break;
    }
    QRAG_RETURN_IF_ERROR(step(absl::MakeConstSpan(&s.token, 1), pos));
    ++pos;
  }
  result.decode_seconds = SecondsSince(t1);
  return result;
}

}  // namespace qrag::engine
