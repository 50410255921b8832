#include "server/engine/output_processor.h"

#include <algorithm>
#include <cmath>

#include "server/common/status.h"

namespace qrag::engine {
namespace {

// Detokenizer context: a few prompt ids are enough for spacing to match a whole-sequence decode.
constexpr size_t kContextIds = 4;

}  // namespace

const char* FinishReasonName(FinishReason reason) { return reason == FinishReason::kStop ? "stop" : "length"; }

OutputProcessor::OutputProcessor(const model::Tokenizer* tokenizer, OutputOptions options,
                                 absl::Span<const int32_t> prompt_ids)
    : tokenizer_(tokenizer),
      options_(std::move(options)),
      sampler_(options_.sampling),
      decoder_(tokenizer, prompt_ids.last(std::min(prompt_ids.size(), kContextIds))),
      history_(prompt_ids.begin(), prompt_ids.end()) {
  std::sort(options_.stop_ids.begin(), options_.stop_ids.end());
}

std::string OutputProcessor::ReleaseText(const std::string& piece, bool* stopped) {
  pending_ += piece;
  size_t first = std::string::npos;
  for (const auto& s : options_.stop) {
    if (s.empty()) continue;
    if (size_t at = pending_.find(s); at != std::string::npos) first = std::min(first, at);
  }
  if (first != std::string::npos) {
    *stopped = true;
    std::string out = pending_.substr(0, first);
    pending_.clear();
    return out;
  }
  // Hold back the longest suffix that is a proper prefix of a stop string.
  size_t keep = 0;
  for (const auto& s : options_.stop) {
    for (size_t len = std::min(s.size() - (s.empty() ? 0 : 1), pending_.size()); len > keep; --len) {
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

absl::StatusOr<OutputProcessor::Step> OutputProcessor::Next(absl::Span<float> logits) {
  Step step;
  std::vector<std::pair<int32_t, float>> top;
  std::vector<float> log_softmax;
  if (options_.logprobs > 0) {
    // Logprobs of the model's distribution (before temperature, penalties and filters).
    const float mx = *std::max_element(logits.begin(), logits.end());
    double z = 0;
    for (float l : logits) z += std::exp(static_cast<double>(l) - mx);
    const float lz = static_cast<float>(std::log(z)) + mx;
    log_softmax.resize(logits.size());
    for (size_t i = 0; i < logits.size(); ++i) log_softmax[i] = logits[i] - lz;
    std::vector<int32_t> order(logits.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = static_cast<int32_t>(i);
    const size_t n = std::min<size_t>(options_.logprobs, order.size());
    std::partial_sort(order.begin(), order.begin() + n, order.end(),
                      [&](int32_t a, int32_t b) { return log_softmax[a] > log_softmax[b] || (log_softmax[a] == log_softmax[b] && a < b); });
    for (size_t i = 0; i < n; ++i) top.emplace_back(order[i], log_softmax[order[i]]);
  }
  step.token = sampler_.Sample(logits, history_);
  if (std::binary_search(options_.stop_ids.begin(), options_.stop_ids.end(), step.token)) {
    bool stopped = false;
    step.text = ReleaseText(decoder_.Flush(), &stopped);
    step.text += std::exchange(pending_, {});
    step.finished = true;
    step.reason = FinishReason::kStop;
    return step;
  }
  step.appended = true;
  ++generated_;
  history_.push_back(step.token);
  QRAG_ASSIGN_OR_RETURN(std::string piece, decoder_.Push(step.token));
  bool stopped = false;
  step.text = ReleaseText(piece, &stopped);
  if (options_.logprobs > 0) {
    step.logprob.token = step.token;
    // The token's own text with its spacing: decode it after the previous token and drop the previous
    // token's text (a lone SentencePiece piece would lose its leading space).
    const int32_t pair[2] = {history_[history_.size() - 2], step.token};
    auto with_prev = tokenizer_->Decode(pair);
    auto prev = tokenizer_->Decode(absl::MakeConstSpan(pair, 1));
    if (with_prev.ok() && prev.ok() && with_prev->compare(0, prev->size(), *prev) == 0) {
      step.logprob.text = with_prev->substr(prev->size());
    } else if (auto alone = tokenizer_->Decode(absl::MakeConstSpan(&step.token, 1)); alone.ok()) {
      step.logprob.text = *alone;
    }
    step.logprob.logprob = log_softmax[step.token];
    step.logprob.top = std::move(top);
  }
  if (stopped) {
    step.finished = true;
    step.reason = FinishReason::kStop;
  } else if (generated_ >= options_.max_tokens) {
    step.finished = true;
    step.reason = FinishReason::kLength;
    step.text += ReleaseText(decoder_.Flush(), &stopped);
    if (stopped) {
      step.reason = FinishReason::kStop;
    } else {
      step.text += std::exchange(pending_, {});
    }
  }
  return step;
}

}  // namespace qrag::engine
