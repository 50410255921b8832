#include "server/api/validation.h"

#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "google/protobuf/unknown_field_set.h"
#include "server/common/echo.h"
#include "server/common/status.h"
#include "server/engine/request_limits.h"
#include "server/engine/sampler.h"
#include "server/model/utf8.h"

namespace qrag::api {
namespace {

// Field numbers of the string fields of GenerateRequest (inference.proto), for the UTF-8 diagnosis.
constexpr int kModelField = 1;
constexpr int kPromptField = 2;
constexpr int kStopField = 10;
constexpr int kMessagesField = 2;  // ChatRequest.messages

// Why a GenerateRequest did not parse, by field, from its schema-less wire form.
absl::Status DiagnoseUnparsable(std::string_view wire) {
  google::protobuf::UnknownFieldSet fields;
  if (wire.size() > static_cast<size_t>(INT32_MAX) || !fields.ParseFromArray(wire.data(), static_cast<int>(wire.size()))) {
    return absl::InvalidArgumentError("the request is not a valid serialized qrag.v1.GenerateRequest");
  }
  int stop_index = 0;
  for (int i = 0; i < fields.field_count(); ++i) {
    const google::protobuf::UnknownField& f = fields.field(i);
    if (f.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) continue;
    std::string name;
    switch (f.number()) {
      case kModelField: name = "model"; break;
      case kPromptField: name = "prompt"; break;
      case kStopField: name = absl::StrCat("stop[", stop_index++, "]"); break;
      default: continue;
    }
    QRAG_RETURN_IF_ERROR(model::CheckUtf8(f.length_delimited(), name));
  }
  return absl::InvalidArgumentError(
      "the request is not a valid qrag.v1.GenerateRequest (a field has the wrong wire type or a string field "
      "is not UTF-8)");
}

// The same for a ChatRequest: model, stop, and the role and content of each message.
absl::Status DiagnoseUnparsableChat(std::string_view wire) {
  google::protobuf::UnknownFieldSet fields;
  if (wire.size() > static_cast<size_t>(INT32_MAX) || !fields.ParseFromArray(wire.data(), static_cast<int>(wire.size()))) {
    return absl::InvalidArgumentError("the request is not a valid serialized qrag.v1.ChatRequest");
  }
  int stop_index = 0, message_index = 0;
  for (int i = 0; i < fields.field_count(); ++i) {
    const google::protobuf::UnknownField& f = fields.field(i);
    if (f.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED) continue;
    if (f.number() == kModelField) QRAG_RETURN_IF_ERROR(model::CheckUtf8(f.length_delimited(), "model"));
    if (f.number() == kStopField) {
      QRAG_RETURN_IF_ERROR(model::CheckUtf8(f.length_delimited(), absl::StrCat("stop[", stop_index++, "]")));
    }
    if (f.number() != kMessagesField) continue;
    const int index = message_index++;
    google::protobuf::UnknownFieldSet message;
    if (!message.ParseFromString(f.length_delimited())) {
      return absl::InvalidArgumentError(absl::StrCat("messages[", index, "] is not a valid qrag.v1.ChatMessage"));
    }
    for (int j = 0; j < message.field_count(); ++j) {
      const google::protobuf::UnknownField& g = message.field(j);
      if (g.type() != google::protobuf::UnknownField::TYPE_LENGTH_DELIMITED || g.number() < 1 || g.number() > 2) {
        continue;
      }
      QRAG_RETURN_IF_ERROR(model::CheckUtf8(
          g.length_delimited(), absl::StrCat("messages[", index, "].", g.number() == 1 ? "role" : "content")));
    }
  }
  return absl::InvalidArgumentError(
      "the request is not a valid qrag.v1.ChatRequest (a field has the wrong wire type or a string field is "
      "not UTF-8)");
}

}  // namespace

absl::StatusOr<qrag::v1::GenerateRequest> ParseGenerateRequest(std::string_view wire) {
  qrag::v1::GenerateRequest request;
  if (wire.size() <= static_cast<size_t>(INT32_MAX) &&
      request.ParseFromArray(wire.data(), static_cast<int>(wire.size()))) {
    return request;
  }
  return DiagnoseUnparsable(wire);
}

absl::StatusOr<qrag::v1::ChatRequest> ParseChatRequest(std::string_view wire) {
  qrag::v1::ChatRequest request;
  if (wire.size() <= static_cast<size_t>(INT32_MAX) &&
      request.ParseFromArray(wire.data(), static_cast<int>(wire.size()))) {
    return request;
  }
  return DiagnoseUnparsableChat(wire);
}

absl::StatusOr<std::string> ResolveModel(std::string_view requested, const std::vector<std::string>& models) {
  if (requested.empty() && !models.empty()) return models.front();
  for (const std::string& m : models) {
    if (m == requested) return m;
  }
  return absl::NotFoundError(absl::StrCat("model ", Echo(requested), " is not served here; available: ",
                                          absl::StrJoin(models, ", ")));
}

namespace {

// The fields GenerateRequest and ChatRequest share (same names, numbers and rules): max_tokens, sampling,
// stop, logprobs.
template <typename Request>
absl::Status ValidateSharedFields(const Request& request, const ValidationOptions& options, engine::EngineRequest* out) {
  engine::EngineRequest& e = *out;
  e.max_tokens = request.has_max_tokens() ? request.max_tokens() : options.default_max_tokens;
  if (absl::Status s = engine::CheckMaxTokens(e.max_tokens); !s.ok()) {
    return absl::Status(s.code(), absl::StrCat(s.message(), "; leave it unset for the default of ",
                                               options.default_max_tokens));
  }

  // The sampling rules live with the sampler (engine::ValidateSamplingParams), for every front end and the
  // offline tools alike; the proto's unset fields take their documented defaults first.
  engine::SamplingParams& s = e.sampling;
  s.temperature = request.has_temperature() ? request.temperature() : 1.0f;
  s.top_p = request.has_top_p() ? request.top_p() : 1.0f;
  s.top_k = request.top_k();
  s.min_p = request.min_p();
  s.repetition_penalty = request.has_repetition_penalty() ? request.repetition_penalty() : 1.0f;
  QRAG_RETURN_IF_ERROR(engine::ValidateSamplingParams(s));
  if (request.has_seed()) s.seed = request.seed();

  if (request.stop_size() > options.max_stop_strings) {
    return absl::InvalidArgumentError(absl::StrCat("stop has ", request.stop_size(), " strings; at most ",
                                                   options.max_stop_strings, " are accepted"));
  }
  for (int i = 0; i < request.stop_size(); ++i) {
    const std::string& stop = request.stop(i);
    const std::string name = absl::StrCat("stop[", i, "]");
    if (stop.empty()) return absl::InvalidArgumentError(absl::StrCat(name, " is empty"));
    if (stop.size() > static_cast<size_t>(options.max_stop_bytes)) {
      return absl::InvalidArgumentError(absl::StrCat(name, " is ", stop.size(), " bytes; at most ",
                                                     options.max_stop_bytes, " are accepted"));
    }
    QRAG_RETURN_IF_ERROR(model::CheckUtf8(stop, name));
    e.stop.push_back(stop);
  }

  e.logprobs = request.logprobs();
  if (e.logprobs < 0 || e.logprobs > options.max_logprobs) {
    return absl::InvalidArgumentError(absl::StrCat("logprobs must be in [0, ", options.max_logprobs, "] (got ",
                                                   e.logprobs, "); 0 = none"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<ValidatedRequest> ValidateGenerateRequest(const qrag::v1::GenerateRequest& request,
                                                         const ValidationOptions& options) {
  ValidatedRequest out;
  QRAG_ASSIGN_OR_RETURN(out.model, ResolveModel(request.model(), options.models));
  engine::EngineRequest& e = out.request;

  const std::string& prompt = request.prompt();
  if (prompt.empty()) {
    return absl::InvalidArgumentError("prompt is empty; give the text to continue");
  }
  if (prompt.size() > static_cast<size_t>(options.max_prompt_bytes)) {
    return absl::InvalidArgumentError(absl::StrCat("prompt is ", prompt.size(), " bytes; this server accepts at most ",
                                                   options.max_prompt_bytes, " bytes (--max-prompt-bytes)"));
  }
  QRAG_RETURN_IF_ERROR(model::CheckUtf8(prompt, "prompt"));
  e.prompt = prompt;
  QRAG_RETURN_IF_ERROR(ValidateSharedFields(request, options, &e));
  return out;
}

absl::StatusOr<ValidatedChat> ValidateChatRequest(const qrag::v1::ChatRequest& request,
                                                  const ValidationOptions& options) {
  ValidatedChat out;
  QRAG_ASSIGN_OR_RETURN(out.model, ResolveModel(request.model(), options.models));
  if (request.messages_size() == 0) {
    return absl::InvalidArgumentError("messages is empty; give the conversation (at least one user message)");
  }
  size_t bytes = 0;
  for (int i = 0; i < request.messages_size(); ++i) {
    const qrag::v1::ChatMessage& m = request.messages(i);
    if (!chat::IsKnownRole(m.role())) {
      return absl::InvalidArgumentError(absl::StrCat("messages[", i, "].role is ", Echo(m.role()),
                                                     "; use system, user, assistant or tool"));
    }
    QRAG_RETURN_IF_ERROR(model::CheckUtf8(m.content(), absl::StrCat("messages[", i, "].content")));
    bytes += m.content().size();
    out.messages.push_back({m.role(), m.content()});
  }
  if (bytes > static_cast<size_t>(options.max_prompt_bytes)) {
    return absl::InvalidArgumentError(absl::StrCat("the messages' contents are ", bytes,
                                                   " bytes; this server accepts at most ", options.max_prompt_bytes,
                                                   " bytes (--max-prompt-bytes)"));
  }
  out.add_generation_prompt = !request.has_add_generation_prompt() || request.add_generation_prompt();
  QRAG_RETURN_IF_ERROR(ValidateSharedFields(request, options, &out.request));
  return out;
}

}  // namespace qrag::api
