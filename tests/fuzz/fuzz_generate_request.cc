// The request path of Generate before the engine: wire bytes → GenerateRequest (ParseGenerateRequest) →
// ValidateGenerateRequest. A request that passes validation must hold values the engine accepts: max_tokens,
// the sampling parameters and the stop strings inside their documented ranges (the engine's own checks).
// The first input byte picks the served model list so that both a named and the default model are tried.
#include <cmath>
#include <cstdint>

#include "server/api/validation.h"
#include "server/engine/request_limits.h"
#include "server/engine/sampler.h"
#include "tests/fuzz/fuzz_util.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace qrag;
  if (size < 1) return 0;
  api::ValidationOptions options;
  options.models = data[0] & 1 ? std::vector<std::string>{"m", "other"} : std::vector<std::string>{"m"};
  options.max_prompt_bytes = 4096;
  auto request = api::ParseGenerateRequest(fuzz::AsText(data + 1, size - 1));
  if (!request.ok()) {
    if (request.status().code() != absl::StatusCode::kInvalidArgument) fuzz::Fail(request.status().ToString());
    return 0;
  }
  auto validated = api::ValidateGenerateRequest(*request, options);
  if (!validated.ok()) {
    const absl::StatusCode code = validated.status().code();
    if (code != absl::StatusCode::kInvalidArgument && code != absl::StatusCode::kNotFound) {
      fuzz::Fail(validated.status().ToString());
    }
    // The message is echoed to the client: it must stay small whatever the request held.
    if (validated.status().message().size() > 4096) fuzz::Fail("an error message longer than 4 KiB");
    return 0;
  }
  const engine::EngineRequest& r = validated->request;
  if (!engine::CheckMaxTokens(r.max_tokens).ok()) fuzz::Fail("validated max_tokens rejected by the engine");
  if (!engine::ValidateSamplingParams(r.sampling).ok()) fuzz::Fail("validated sampling rejected by the engine");
  if (r.prompt.size() > static_cast<size_t>(options.max_prompt_bytes)) fuzz::Fail("prompt over the limit");
  if (r.stop.size() > static_cast<size_t>(options.max_stop_strings)) fuzz::Fail("too many stop strings");
  if (r.logprobs < 0 || r.logprobs > options.max_logprobs) fuzz::Fail("logprobs out of range");
  if (validated->model != "m" && validated->model != "other") fuzz::Fail("resolved to a model not served");
  return 0;
}
