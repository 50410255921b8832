#include "server/engine/generator.h"

#include <algorithm>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "server/common/status.h"

namespace qrag::engine {
namespace {

double SecondsSince(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Holds back completion text that might be the start of a stop string, so a stop string is never
// streamed out and then retracted.
class StopMatcher {
 public:
  explicit StopMatcher(const std::vector<std::string>& stops) : stops_(stops) {}

  // Adds text; returns what can be released now. Sets *stopped when a stop string completed (the text
  // before it is released; the rest is dropped).
  std::string Push(std::string_view text, bool* stopped) {
    pending_.append(text);
    size_t first = std::string::npos;
    for (const auto& s : stops_) {
      if (s.empty()) continue;
      size_t at = pending_.find(s);
      if (at != std::string::npos) first = std::min(first, at);
    }
    if (first != std::string::npos) {
      *stopped = true;
      std::string out = pending_.substr(0, first);
      pending_.clear();
      return out;
    }
    // Keep the longest suffix of pending_ that is a proper prefix of some stop string.
    size_t keep = 0;
    for (const auto& s : stops_) {
      for (size_t len = std::min(s.size() - 1, pending_.size()); len > keep; --len) {
        if (pending_.compare(pending_.size() - len, len, s, 0, len) == 0) {
          keep = len;
          break;
        }
      }
    }
    std::string out = pending_.substr(0, pending_.size() - keep);
    pending_.erase(0, pending_.size() - keep);
    return out;
  }
  std::string Flush() { return std::exchange(pending_, {}); }

 private:
  const std::vector<std::string>& stops_;
  std::string pending_;
};

}  // namespace

const char* FinishReasonName(FinishReason reason) {
  return reason == FinishReason::kStop ? "stop" : "length";
}

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
  if (request.max_tokens <= 0) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens must be > 0, got ", request.max_tokens));
  }
  GenerateResult result;
  QRAG_ASSIGN_OR_RETURN(result.prompt_ids, tokenizer_->Encode(request.prompt, model::EncodeOptions{}));
  const int ctx = options_.context_length;
  const int prompt_len = static_cast<int>(result.prompt_ids.size());
  if (prompt_len == 0) {
    return absl::InvalidArgumentError("prompt is empty and the tokenizer has no BOS token to start from");
  }
  if (prompt_len >= ctx) {
    return absl::OutOfRangeError(absl::StrCat("prompt is ", prompt_len, " tokens; the context holds ", ctx,
                                              " (prompt plus at least one generated token): shorten the prompt"));
  }
  if (prompt_len + request.max_tokens > ctx) {
    return absl::InvalidArgumentError(absl::StrCat("max_tokens ", request.max_tokens, " plus the prompt's ", prompt_len,
                                                   " tokens exceeds the context of ", ctx, " tokens; use max_tokens <= ",
                                                   ctx - prompt_len));
  }

  const int vocab = transformer_->config().vocab_size;
  std::vector<float> logits(vocab);
  std::vector<int32_t> history = result.prompt_ids;
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

  Sampler sampler(request.sampling);
  result.seed = sampler.seed();
  auto t0 = std::chrono::steady_clock::now();
  for (int begin = 0; begin < prompt_len; begin += options_.prefill_chunk) {
    const int len = std::min(options_.prefill_chunk, prompt_len - begin);
    QRAG_RETURN_IF_ERROR(step(absl::MakeConstSpan(result.prompt_ids).subspan(begin, len), begin));
  }
  result.prefill_seconds = SecondsSince(t0);
  auto t1 = std::chrono::steady_clock::now();

  // Detokenize with a few prompt ids as context so spacing matches a whole-sequence decode.
  const size_t ctx_ids = std::min<size_t>(result.prompt_ids.size(), 4);
  model::IncrementalDecoder decoder(tokenizer_, absl::MakeConstSpan(result.prompt_ids).last(ctx_ids));
  StopMatcher stops(request.stop);
  auto emit = [&](const std::string& text) {
    if (text.empty()) return;
    result.text += text;
    if (on_text) on_text(text);
  };

  int pos = prompt_len;
  bool stopped = false;
  while (true) {
    const int32_t next = sampler.Sample(absl::MakeSpan(logits), history);
    if (std::binary_search(stop_ids_.begin(), stop_ids_.end(), next)) {
      result.finish_reason = FinishReason::kStop;
      break;
    }
    result.output_ids.push_back(next);
    history.push_back(next);
    QRAG_ASSIGN_OR_RETURN(std::string piece, decoder.Push(next));
    emit(stops.Push(piece, &stopped));
    if (stopped) {
      result.finish_reason = FinishReason::kStop;
      break;
    }
    if (static_cast<int>(result.output_ids.size()) >= request.max_tokens) {
      result.finish_reason = FinishReason::kLength;
      break;
    }
    QRAG_RETURN_IF_ERROR(step(absl::MakeConstSpan(&next, 1), pos));
    ++pos;
  }
  if (!stopped) {
    emit(stops.Push(decoder.Flush(), &stopped));
    if (!stopped) emit(stops.Flush());
    if (stopped) result.finish_reason = FinishReason::kStop;
  }
  result.decode_seconds = SecondsSince(t1);
  return result;
}

}  // namespace qrag::engine
