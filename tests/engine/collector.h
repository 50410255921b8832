// A RequestObserver that records what the engine reports for one request, for the engine's tests.
#ifndef QRAG_TESTS_ENGINE_COLLECTOR_H_
#define QRAG_TESTS_ENGINE_COLLECTOR_H_

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "server/engine/engine.h"

namespace qrag::engine {

class Collector : public RequestObserver {
 public:
  void OnText(std::string_view text, absl::Span<const TokenLogprob> tokens) override {
    std::lock_guard<std::mutex> lock(mu_);
    text_ += text;
    for (const auto& t : tokens) logprobs_.push_back(t);
    ++chunks_;
  }
  void OnFinish(const absl::Status& status, FinishReason reason, const Usage& usage, const Timings& t) override {
    std::lock_guard<std::mutex> lock(mu_);
    ++finishes_;
    status_ = status;
    reason_ = reason;
    usage_ = usage;
    timings_ = t;
    cv_.notify_all();
  }
  void Wait(int seconds = 30) {
    std::unique_lock<std::mutex> lock(mu_);
    ASSERT_TRUE(cv_.wait_for(lock, std::chrono::seconds(seconds), [&] { return finishes_ > 0; }));
  }
  int chunks() {
    std::lock_guard<std::mutex> lock(mu_);
    return chunks_;
  }

  std::mutex mu_;
  std::condition_variable cv_;
  std::string text_;
  std::vector<TokenLogprob> logprobs_;
  int chunks_ = 0;
  int finishes_ = 0;
  absl::Status status_;
  FinishReason reason_ = FinishReason::kLength;
  Usage usage_;
  Timings timings_;
};

}  // namespace qrag::engine

#endif  // QRAG_TESTS_ENGINE_COLLECTOR_H_
