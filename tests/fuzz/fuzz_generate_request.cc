// The request paths of Generate and Chat before the engine: wire bytes → GenerateRequest (ParseGenerateRequest)
// → ValidateGenerateRequest, or → ChatRequest (ParseChatRequest) → ValidateChatRequest. A request that passes
// validation must hold values the engine accepts: max_tokens, the sampling parameters and the stop strings
// inside their documented ranges (the engine's own checks); a chat's messages are non-empty, of known roles,
// UTF-8 and within the byte limit. The first input byte picks the served model list (bit 0) so that both a
// named and the default model are tried, and the request type (bit 1: ChatRequest).
#include <cmath>
#include <cstdint>

#include "server/api/validation.h"
#include "server/engine/request_limits.h"
#include "server/engine/sampler.h"
#include "server/model/utf8.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qrag;
  if (size < 1) return 0;
  api::ValidationOptions options;
  options.models = data[0] & 1 ? std::vector<std::string>{"m", "other"} : std::vector<std::string>{"m"};
  options.max_prompt_bytes = 4096;
  auto refused = [](const absl::Status& s) {
    const absl::StatusCode code = s.code();
    if (code != absl::StatusCode::kInvalidArgument && code != absl::StatusCode::kNotFound) fuzz::Fail(s.ToString());
    // The message is echoed to the client: it must stay small whatever the request held.
    if (s.message().size() > 4096) fuzz::Fail("an error message longer than 4 KiB");
    return 0;
  };
  const std::string_view wire = fuzz::AsText(data + 1, size - 1);
  engine::EngineRequest r;
  std::string model;
  if (data[0] & 2) {
    auto request = api::ParseChatRequest(wire);
    if (!request.ok()) return refused(request.status());
    auto validated = api::ValidateChatRequest(*request, options);
    if (!validated.ok()) return refused(validated.status());
    if (validated->messages.empty()) fuzz::Fail("a chat without messages passed");
    size_t bytes = 0;
    for (const chat::Message& m : validated->messages) {
      if (!chat::IsKnownRole(m.role)) fuzz::Fail("an unknown role passed");
      if (!model::CheckUtf8(m.content, "content").ok()) fuzz::Fail("content that is not UTF-8 passed");
      bytes += m.content.size();
    }
    if (bytes > static_cast<size_t>(options.max_prompt_bytes)) fuzz::Fail("messages over the byte limit");
    r = std::move(validated->request);
    model = validated->model;
  } else {
    auto request = api::ParseGenerateRequest(wire);
    if (!request.ok()) return refused(request.status());
    auto validated = api::ValidateGenerateRequest(*request, options);
    if (!validated.ok()) return refused(validated.status());
    r = std::move(validated->request);
    model = validated->model;
  }
  if (!engine::CheckMaxTokens(r.max_tokens).ok()) fuzz::Fail("validated max_tokens rejected by the engine");
  if (!engine::ValidateSamplingParams(r.sampling).ok()) fuzz::Fail("validated sampling rejected by the engine");
  if (r.prompt.size() > static_cast<size_t>(options.max_prompt_bytes)) fuzz::Fail("prompt over the limit");
  if (r.stop.size() > static_cast<size_t>(options.max_stop_strings)) fuzz::Fail("too many stop strings");
  if (r.logprobs < 0 || r.logprobs > options.max_logprobs) fuzz::Fail("logprobs out of range");
  if (model != "m" && model != "other") fuzz::Fail("resolved to a model not served");
  return 0;
}
