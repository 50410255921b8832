// The OpenAI HTTP API's request bodies before the engine: JSON → ParseChatCompletionRequest /
// ParseCompletionRequest / ParseEmbeddingsRequest → the gRPC validation (ValidateChatRequest /
// ValidateGenerateRequest). The first input byte picks the endpoint (modulo 3). Whatever the body, a refusal is
// INVALID_ARGUMENT (or NOT_FOUND for the model) with a bounded message, and the error object that goes back to
// the client serializes without throwing; an accepted request satisfies the documented answer options
// (stream_options only with stream, top_logprobs only with logprobs, n = 1 folded away).
#include <cstdint>

#include "server/api/openai_json.h"
#include "server/api/validation.h"
#include "server/engine/request_limits.h"
#include "server/engine/sampler.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qrag;
  if (size < 1) return 0;
  api::ValidationOptions options;
  options.models = {"m"};
  options.max_prompt_bytes = 4096;
  const std::string_view body = fuzz::AsText(data + 1, size - 1);
  const int endpoint = data[0] % 3;
  auto refused = [&](const absl::Status& s) {
    const absl::StatusCode code = s.code();
    if (code != absl::StatusCode::kInvalidArgument && code != absl::StatusCode::kNotFound) fuzz::Fail(s.ToString());
    if (s.message().size() > 4096) fuzz::Fail("an error message longer than 4 KiB");
    const std::string answer = api::openai::Dump(api::openai::ErrorObject(s, api::openai::ParamOf(s, endpoint == 0)));
    if (answer.empty()) fuzz::Fail("an empty error object");
    return 0;
  };
  engine::EngineRequest r;
  if (endpoint == 0) {
    auto parsed = api::openai::ParseChatCompletionRequest(body);
    if (!parsed.ok()) return refused(parsed.status());
    if (parsed->answer.include_usage && !parsed->answer.stream) fuzz::Fail("include_usage without stream");
    if (parsed->answer.top_logprobs > 0 && !parsed->answer.logprobs) fuzz::Fail("top_logprobs without logprobs");
    if (parsed->answer.logprobs && parsed->request.logprobs() < 1) fuzz::Fail("logprobs asked of no alternative");
    auto validated = api::ValidateChatRequest(parsed->request, options);
    if (!validated.ok()) return refused(validated.status());
    r = std::move(validated->request);
  } else if (endpoint == 1) {
    auto parsed = api::openai::ParseCompletionRequest(body);
    if (!parsed.ok()) return refused(parsed.status());
    auto validated = api::ValidateGenerateRequest(parsed->request, options);
    if (!validated.ok()) return refused(validated.status());
    r = std::move(validated->request);
  } else {
    auto parsed = api::openai::ParseEmbeddingsRequest(body);
    if (!parsed.ok()) return refused(parsed.status());
    if (parsed->inputs.empty()) fuzz::Fail("an embeddings request without input passed");
    return 0;
  }
  if (!engine::CheckMaxTokens(r.max_tokens).ok()) fuzz::Fail("validated max_tokens rejected by the engine");
  if (!engine::ValidateSamplingParams(r.sampling).ok()) fuzz::Fail("validated sampling rejected by the engine");
  if (r.stop.size() > static_cast<size_t>(options.max_stop_strings)) fuzz::Fail("too many stop strings");
  if (r.logprobs < 0 || r.logprobs > options.max_logprobs) fuzz::Fail("logprobs out of range");
  return 0;
}
