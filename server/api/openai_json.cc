#include "server/api/openai_json.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <map>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/ascii.h"
#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/echo.h"
#include "server/common/json_parse.h"
#include "server/common/status.h"

namespace qrag::api::openai {
namespace {

using nlohmann::json;

constexpr char kParamPayload[] = "type.qrag.dev/openai.param";

absl::Status Bad(std::string_view param, std::string message) {
  absl::Status s = absl::InvalidArgumentError(std::move(message));
  s.SetPayload(kParamPayload, absl::Cord(std::string(param)));
  return s;
}

const char* TypeName(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    case json::value_t::number_float: return "a number";
    default: return "an integer";
  }
}

absl::Status WrongType(std::string_view param, const json& v, std::string_view wanted) {
  return Bad(param, absl::StrCat(std::string(param), " must be ", std::string(wanted), " (got ", TypeName(v), ")"));
}

// The body's members, checked one by one; at the end, any member nobody asked for is an unknown parameter.
class Body {
 public:
  explicit Body(const json& object) : object_(object) {}

  // The member, or null when absent or JSON null (OpenAI's "not given").
  const json* Get(const char* key) {
    seen_.insert(key);
    auto it = object_.find(key);
    if (it == object_.end() || it->is_null()) return nullptr;
    return &*it;
  }

  absl::StatusOr<std::optional<std::string>> String(const char* key) {
    const json* v = Get(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_string()) return WrongType(key, *v, "a string");
    return v->get<std::string>();
  }

  absl::StatusOr<std::optional<bool>> Bool(const char* key) {
    const json* v = Get(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_boolean()) return WrongType(key, *v, "true or false");
    return v->get<bool>();
  }

  absl::StatusOr<std::optional<double>> Number(const char* key) {
    const json* v = Get(key);
    if (v == nullptr) return std::nullopt;
    if (!v->is_number()) return WrongType(key, *v, "a number");
    return v->get<double>();
  }

  // An integer (a JSON number without a fraction) within [lo, hi].
  absl::StatusOr<std::optional<int64_t>> Int(const char* key, int64_t lo, int64_t hi) {
    const json* v = Get(key);
    if (v == nullptr) return std::nullopt;
    int64_t out;
    if (v->is_number_integer()) {
      if (v->is_number_unsigned() && v->get<uint64_t>() > static_cast<uint64_t>(hi)) {
        return Bad(key, absl::StrCat(key, " must be in [", lo, ", ", hi, "] (got ", v->dump(), ")"));
      }
      out = v->get<int64_t>();
    } else if (v->is_number_float() && std::isfinite(v->get<double>()) &&
               std::floor(v->get<double>()) == v->get<double>() && std::fabs(v->get<double>()) < 9e15) {
      out = static_cast<int64_t>(v->get<double>());
    } else {
      return WrongType(key, *v, "an integer");
    }
    if (out < lo || out > hi) {
      return Bad(key, absl::StrCat(key, " must be in [", lo, ", ", hi, "] (got ", out, ")"));
    }
    return out;
  }

  // A parameter qrag does not serve: accepted only at its no-op value (`is_noop`), else a 400 saying why.
  absl::Status Refuse(const char* key, bool (*is_noop)(const json&), std::string_view why) {
    const json* v = Get(key);
    if (v == nullptr || is_noop(*v)) return absl::OkStatus();
    return Bad(key, absl::StrCat(key, " is not supported by this server: ", std::string(why)));
  }

  void Ignore(const char* key) { seen_.insert(key); }

  absl::Status CheckNoOthers() const {
    for (auto it = object_.begin(); it != object_.end(); ++it) {
      if (!seen_.contains(it.key())) {
        return Bad(it.key(), absl::StrCat("unrecognized request argument supplied: ", Echo(it.key())));
      }
    }
    return absl::OkStatus();
  }

 private:
  const json& object_;
  absl::flat_hash_set<std::string> seen_;
};

bool IsZero(const json& v) { return v.is_number() && v.get<double>() == 0; }
bool IsEmpty(const json& v) { return (v.is_object() || v.is_array() || v.is_string()) && v.empty(); }
bool IsFalse(const json& v) { return v.is_boolean() && !v.get<bool>(); }
bool IsOne(const json& v) { return v.is_number() && v.get<double>() == 1; }
bool IsNoTool(const json& v) { return v.is_string() && v.get<std::string>() == "none"; }
bool IsTextFormat(const json& v) {
  return v.is_object() && v.contains("type") && v["type"].is_string() && v["type"].get<std::string>() == "text";
}
bool IsTextOnly(const json& v) { return v.is_array() && v.size() == 1 && v[0] == "text"; }

absl::StatusOr<json> ParseObject(std::string_view body) {
  if (body.empty()) return Bad("", "the request body is empty; send a JSON object (Content-Type: application/json)");
  QRAG_ASSIGN_OR_RETURN(json v, ParseJsonBounded(absl::string_view(body.data(), body.size()), "request body"));
  if (!v.is_object()) return Bad("", absl::StrCat("the request body must be a JSON object (got ", TypeName(v), ")"));
  return v;
}

// The fields GenerateRequest and ChatRequest share, and the parameters both endpoints treat alike.
template <typename Request>
absl::Status ParseShared(Body& body, Request* request, AnswerOptions* answer) {
  QRAG_ASSIGN_OR_RETURN(std::optional<std::string> model, body.String("model"));
  if (model) request->set_model(*model);
  QRAG_ASSIGN_OR_RETURN(std::optional<double> temperature, body.Number("temperature"));
  if (temperature) request->set_temperature(static_cast<float>(*temperature));
  QRAG_ASSIGN_OR_RETURN(std::optional<double> top_p, body.Number("top_p"));
  if (top_p) request->set_top_p(static_cast<float>(*top_p));
  QRAG_ASSIGN_OR_RETURN(std::optional<int64_t> top_k, body.Int("top_k", 0, std::numeric_limits<int32_t>::max()));
  if (top_k) request->set_top_k(static_cast<int32_t>(*top_k));
  QRAG_ASSIGN_OR_RETURN(std::optional<double> min_p, body.Number("min_p"));
  if (min_p) request->set_min_p(static_cast<float>(*min_p));
  QRAG_ASSIGN_OR_RETURN(std::optional<double> repetition_penalty, body.Number("repetition_penalty"));
  if (repetition_penalty) request->set_repetition_penalty(static_cast<float>(*repetition_penalty));
  QRAG_ASSIGN_OR_RETURN(std::optional<int64_t> seed,
                        body.Int("seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()));
  if (seed) request->set_seed(static_cast<uint64_t>(*seed));

  if (const json* stop = body.Get("stop"); stop != nullptr) {
    if (stop->is_string()) {
      request->add_stop(stop->get<std::string>());
    } else if (stop->is_array()) {
      for (size_t i = 0; i < stop->size(); ++i) {
        if (!(*stop)[i].is_string()) return WrongType("stop", (*stop)[i], "a string or an array of strings");
        request->add_stop((*stop)[i].get<std::string>());
      }
    } else {
      return WrongType("stop", *stop, "a string or an array of strings");
    }
  }

  QRAG_ASSIGN_OR_RETURN(std::optional<int64_t> n, body.Int("n", 1, std::numeric_limits<int32_t>::max()));
  if (n && *n != 1) {
    return Bad("n", absl::StrCat("n must be 1 (got ", *n, "): this server returns one choice per request; send ",
                                 *n, " requests (with different seeds) for more"));
  }
  QRAG_ASSIGN_OR_RETURN(std::optional<bool> stream, body.Bool("stream"));
  answer->stream = stream.value_or(false);
  if (const json* options = body.Get("stream_options"); options != nullptr) {
    if (!options->is_object()) return WrongType("stream_options", *options, "an object");
    if (!answer->stream) return Bad("stream_options", "stream_options is only allowed when stream is true");
    Body inner(*options);
    QRAG_ASSIGN_OR_RETURN(std::optional<bool> include_usage, inner.Bool("include_usage"));
    answer->include_usage = include_usage.value_or(false);
    inner.Ignore("continuous_usage_stats");
    if (absl::Status s = inner.CheckNoOthers(); !s.ok()) {
      return Bad("stream_options", absl::StrCat("stream_options: ", s.message()));
    }
  }

  QRAG_RETURN_IF_ERROR(body.Refuse(
      "frequency_penalty", IsZero,
      "OpenAI's additive penalties have no equivalent here; use repetition_penalty (qrag's multiplicative "
      "penalty, e.g. 1.1) or leave it 0"));
  QRAG_RETURN_IF_ERROR(body.Refuse(
      "presence_penalty", IsZero,
      "OpenAI's additive penalties have no equivalent here; use repetition_penalty (qrag's multiplicative "
      "penalty, e.g. 1.1) or leave it 0"));
  QRAG_RETURN_IF_ERROR(body.Refuse("logit_bias", IsEmpty, "leave it empty"));
  // Accepted, without effect on the answer.
  for (const char* key : {"user", "metadata", "store", "service_tier", "safety_identifier", "prompt_cache_key",
                          "prompt_cache_retention"}) {
    body.Ignore(key);
  }

  if (const json* rag = body.Get("rag"); rag != nullptr) {
    if (!rag->is_object()) return WrongType("rag", *rag, "an object");
    Body r(*rag);
    qrag::v1::RagOptions* out = request->mutable_rag();
    auto inner = [](const absl::Status& s) { return Bad("rag", absl::StrCat("rag.", s.message())); };
    absl::StatusOr<std::optional<std::string>> collection = r.String("collection");
    if (!collection.ok()) return inner(collection.status());
    if (*collection) out->set_collection(**collection);
    absl::StatusOr<std::optional<int64_t>> k = r.Int("top_k", 0, std::numeric_limits<int32_t>::max());
    if (!k.ok()) return inner(k.status());
    if (*k) out->set_top_k(static_cast<int32_t>(**k));
    absl::StatusOr<std::optional<double>> min_score = r.Number("min_score");
    if (!min_score.ok()) return inner(min_score.status());
    if (*min_score) out->set_min_score(static_cast<float>(**min_score));
    absl::StatusOr<std::optional<std::string>> prompt_template = r.String("prompt_template");
    if (!prompt_template.ok()) return inner(prompt_template.status());
    if (*prompt_template) out->set_prompt_template(**prompt_template);
    absl::StatusOr<std::optional<std::string>> mode = r.String("mode");
    if (!mode.ok()) return inner(mode.status());
    if (*mode) {
      const std::map<std::string, qrag::v1::SearchMode> modes = {{"dense", qrag::v1::SEARCH_MODE_DENSE},
                                                                  {"bm25", qrag::v1::SEARCH_MODE_BM25},
                                                                  {"hybrid", qrag::v1::SEARCH_MODE_HYBRID}};
      auto it = modes.find(**mode);
      if (it == modes.end()) {
        return Bad("rag", absl::StrCat("rag.mode must be \"hybrid\", \"dense\" or \"bm25\" (got ", Echo(**mode), ")"));
      }
      out->set_mode(it->second);
    }
    absl::StatusOr<std::optional<std::string>> order = r.String("passage_order");
    if (!order.ok()) return inner(order.status());
    if (*order) {
      if (**order == "canonical") {
        out->set_passage_order(qrag::v1::PASSAGE_ORDER_CANONICAL);
      } else if (**order == "rank") {
        out->set_passage_order(qrag::v1::PASSAGE_ORDER_RANK);
      } else {
        return Bad("rag", absl::StrCat("rag.passage_order must be \"canonical\" or \"rank\" (got ",
                                       Echo(**order), ")"));
      }
    }
    if (const json* filter = r.Get("filter"); filter != nullptr) {
      if (!filter->is_object()) return Bad("rag", "rag.filter must be an object of string values");
      for (auto it = filter->begin(); it != filter->end(); ++it) {
        if (!it->is_string()) {
          return Bad("rag", absl::StrCat("rag.filter.", Echo(it.key()), " must be a string (got ", TypeName(*it), ")"));
        }
        (*out->mutable_filter())[it.key()] = it->get<std::string>();
      }
    }
    if (absl::Status s = r.CheckNoOthers(); !s.ok()) return inner(s);
  }
  return absl::OkStatus();
}

// A message's content: a string, or an array of text parts (joined by newlines, as vLLM does).
absl::StatusOr<std::string> MessageContent(const json& content, size_t index) {
  const std::string param = absl::StrCat("messages[", index, "].content");
  if (content.is_null()) return std::string();
  if (content.is_string()) return content.get<std::string>();
  if (!content.is_array()) return WrongType(param, content, "a string or an array of text parts");
  std::vector<std::string> texts;
  for (size_t j = 0; j < content.size(); ++j) {
    const json& part = content[j];
    const std::string part_param = absl::StrCat(param, "[", j, "]");
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string()) {
      return Bad(part_param, absl::StrCat(part_param, " must be an object with a \"type\""));
    }
    const std::string type = part["type"].get<std::string>();
    if (type != "text") {
      return Bad(part_param, absl::StrCat(part_param, ".type ", Echo(type),
                                          " is not supported: this server's models read text parts only"));
    }
    if (!part.contains("text") || !part["text"].is_string()) {
      return Bad(part_param, absl::StrCat(part_param, ".text must be a string"));
    }
    texts.push_back(part["text"].get<std::string>());
  }
  return absl::StrJoin(texts, "\n");
}

absl::Status ParseMessages(const json* messages, qrag::v1::ChatRequest* request) {
  if (messages == nullptr) return Bad("messages", "messages is required: the conversation, at least one user message");
  if (!messages->is_array()) return WrongType("messages", *messages, "an array of messages");
  for (size_t i = 0; i < messages->size(); ++i) {
    const json& m = (*messages)[i];
    const std::string param = absl::StrCat("messages[", i, "]");
    if (!m.is_object()) return WrongType(param, m, "an object with role and content");
    Body fields(m);
    absl::StatusOr<std::optional<std::string>> role = fields.String("role");
    if (!role.ok()) return Bad(param, absl::StrCat(param, ".", role.status().message()));
    if (!*role) return Bad(param, absl::StrCat(param, ".role is required"));
    std::string r = **role;
    if (r == "developer") r = "system";  // OpenAI's newer name for the system message
    if (r == "function") {
      return Bad(param, absl::StrCat(param, ".role \"function\" is not supported (function calling is not served)"));
    }
    fields.Ignore("name");
    const json* tool_calls = fields.Get("tool_calls");
    if (tool_calls != nullptr && !IsEmpty(*tool_calls)) {
      return Bad(param, absl::StrCat(param, ".tool_calls is not supported (tool calling is not served)"));
    }
    fields.Ignore("tool_call_id");
    fields.Ignore("refusal");
    const json* content = fields.Get("content");
    if (absl::Status s = fields.CheckNoOthers(); !s.ok()) return Bad(param, absl::StrCat(param, ": ", s.message()));
    QRAG_ASSIGN_OR_RETURN(std::string text, MessageContent(content != nullptr ? *content : json(), i));
    qrag::v1::ChatMessage* out = request->add_messages();
    out->set_role(std::move(r));
    out->set_content(std::move(text));
  }
  return absl::OkStatus();
}

constexpr int64_t kInt32Max = std::numeric_limits<int32_t>::max();

}  // namespace

absl::StatusOr<ChatCompletionRequest> ParseChatCompletionRequest(std::string_view text) {
  QRAG_ASSIGN_OR_RETURN(const json object, ParseObject(text));
  Body body(object);
  ChatCompletionRequest out;
  QRAG_RETURN_IF_ERROR(ParseMessages(body.Get("messages"), &out.request));
  QRAG_RETURN_IF_ERROR(ParseShared(body, &out.request, &out.answer));
  QRAG_ASSIGN_OR_RETURN(std::optional<int64_t> max_tokens, body.Int("max_tokens", 1, kInt32Max));
  QRAG_ASSIGN_OR_RETURN(std::optional<int64_t> max_completion_tokens,
                        body.Int("max_completion_tokens", 1, kInt32Max));
  if (max_tokens && max_completion_tokens && *max_tokens != *max_completion_tokens) {
    return Bad("max_completion_tokens", "max_tokens and max_completion_tokens differ; give one of them");
  }
  if (std::optional<int64_t> m = max_completion_tokens ? max_completion_tokens : max_tokens; m) {
    out.request.set_max_tokens(static_cast<int32_t>(*m));
    out.answer.max_tokens_given = true;
  }
  QRAG_ASSIGN_OR_RETURN(std::optional<bool> logprobs, body.Bool("logprobs"));
  out.answer.logprobs = logprobs.value_or(false);
  QRAG_ASSIGN_OR_RETURN(std::optional<int64_t> top, body.Int("top_logprobs", 0, kInt32Max));
  if (top && !out.answer.logprobs) return Bad("top_logprobs", "top_logprobs needs logprobs: true");
  out.answer.top_logprobs = static_cast<int>(top.value_or(0));
  // The engine reports a token's own logprob only alongside at least one alternative.
  if (out.answer.logprobs) out.request.set_logprobs(std::max(1, out.answer.top_logprobs));
  QRAG_ASSIGN_OR_RETURN(std::optional<bool> add_generation_prompt, body.Bool("add_generation_prompt"));
  if (add_generation_prompt) out.request.set_add_generation_prompt(*add_generation_prompt);

  QRAG_RETURN_IF_ERROR(body.Refuse("tools", IsEmpty, "tool calling is not served; leave tools empty"));
  QRAG_RETURN_IF_ERROR(body.Refuse("tool_choice", IsNoTool, "tool calling is not served; use \"none\""));
  QRAG_RETURN_IF_ERROR(body.Refuse("functions", IsEmpty, "function calling is not served"));
  QRAG_RETURN_IF_ERROR(body.Refuse("function_call", IsNoTool, "function calling is not served"));
  body.Ignore("parallel_tool_calls");
  QRAG_RETURN_IF_ERROR(body.Refuse("response_format", IsTextFormat,
                                   "structured output is not served; use {\"type\": \"text\"}"));
  QRAG_RETURN_IF_ERROR(body.Refuse("modalities", IsTextOnly, "this server answers in text only"));
  QRAG_RETURN_IF_ERROR(body.Refuse("audio", IsEmpty, "this server answers in text only"));
  QRAG_RETURN_IF_ERROR(body.Refuse("prediction", IsEmpty, "predicted outputs are not served"));
  QRAG_RETURN_IF_ERROR(body.CheckNoOthers());
  return out;
}

absl::StatusOr<CompletionRequest> ParseCompletionRequest(std::string_view text) {
  QRAG_ASSIGN_OR_RETURN(const json object, ParseObject(text));
  Body body(object);
  CompletionRequest out;
  const json* prompt = body.Get("prompt");
  if (prompt == nullptr) return Bad("prompt", "prompt is required: the text to continue");
  if (prompt->is_string()) {
    out.request.set_prompt(prompt->get<std::string>());
  } else if (prompt->is_array() && prompt->size() == 1 && (*prompt)[0].is_string()) {
    out.request.set_prompt((*prompt)[0].get<std::string>());
  } else if (prompt->is_array() && !prompt->empty() && ((*prompt)[0].is_string() || (*prompt)[0].is_array())) {
    return Bad("prompt", absl::StrCat("prompt holds ", prompt->size(),
                                      " prompts; this server completes one prompt per request"));
  } else if (prompt->is_array() && !prompt->empty() && (*prompt)[0].is_number()) {
    return Bad("prompt", "prompt as token ids is not supported; send the text");
  } else {
    return WrongType("prompt", *prompt, "a string (or an array of one string)");
  }
  QRAG_RETURN_IF_ERROR(ParseShared(body, &out.request, &out.answer));
  QRAG_ASSIGN_OR_RETURN(std::optional<int64_t> max_tokens, body.Int("max_tokens", 1, kInt32Max));
  if (max_tokens) {
    out.request.set_max_tokens(static_cast<int32_t>(*max_tokens));
    out.answer.max_tokens_given = true;
  }
  QRAG_ASSIGN_OR_RETURN(std::optional<int64_t> logprobs, body.Int("logprobs", 0, kInt32Max));
  if (logprobs && *logprobs > 0) {
    out.answer.logprobs = true;
    out.answer.top_logprobs = static_cast<int>(*logprobs);
    out.request.set_logprobs(static_cast<int32_t>(*logprobs));
  }
  QRAG_RETURN_IF_ERROR(body.Refuse("echo", IsFalse, "the prompt is not echoed; leave echo false"));
  QRAG_RETURN_IF_ERROR(body.Refuse("suffix", IsEmpty, "insertion (suffix) is not served"));
  QRAG_RETURN_IF_ERROR(body.Refuse("best_of", IsOne, "best_of must be 1"));
  QRAG_RETURN_IF_ERROR(body.CheckNoOthers());
  return out;
}

absl::StatusOr<EmbeddingsRequest> ParseEmbeddingsRequest(std::string_view text) {
  QRAG_ASSIGN_OR_RETURN(const json object, ParseObject(text));
  Body body(object);
  EmbeddingsRequest out;
  const json* input = body.Get("input");
  if (input == nullptr) return Bad("input", "input is required: a string or an array of strings to embed");
  if (input->is_string()) {
    out.inputs.push_back(input->get<std::string>());
  } else if (input->is_array()) {
    if (input->empty()) return Bad("input", "input is an empty array; give at least one string");
    for (size_t i = 0; i < input->size(); ++i) {
      const json& item = (*input)[i];
      if (!item.is_string()) {
        return Bad("input", absl::StrCat("input[", i, "] must be a string (got ", TypeName(item),
                                         "); token-id inputs are not supported"));
      }
      out.inputs.push_back(item.get<std::string>());
    }
  } else {
    return WrongType("input", *input, "a string or an array of strings");
  }
  QRAG_ASSIGN_OR_RETURN(std::optional<std::string> model, body.String("model"));
  out.model = model.value_or("");
  QRAG_ASSIGN_OR_RETURN(std::optional<std::string> format, body.String("encoding_format"));
  if (format && *format != "float" && *format != "base64") {
    return Bad("encoding_format", absl::StrCat("encoding_format must be \"float\" or \"base64\" (got ", Echo(*format), ")"));
  }
  out.base64 = format && *format == "base64";
  QRAG_ASSIGN_OR_RETURN(std::optional<int64_t> dimensions, body.Int("dimensions", 1, kInt32Max));
  if (dimensions) out.dimensions = static_cast<int>(*dimensions);
  body.Ignore("user");
  QRAG_RETURN_IF_ERROR(body.CheckNoOthers());
  return out;
}

absl::Status ParamError(std::string_view param, std::string message) { return Bad(param, std::move(message)); }

std::string ParamOf(const absl::Status& status, bool chat) {
  if (auto p = status.GetPayload(kParamPayload); p.has_value()) return std::string(*p);
  const std::string_view m(status.message().data(), status.message().size());
  size_t end = 0;
  while (end < m.size() && (absl::ascii_isalnum(m[end]) || m[end] == '_')) ++end;
  const std::string_view field = m.substr(0, end);
  if (field == "messages" || field == "stop") return std::string(field);
  if (field == "logprobs") return chat ? "top_logprobs" : "logprobs";
  if (field == "model" && status.code() == absl::StatusCode::kNotFound) return "model";
  for (const char* known : {"prompt", "max_tokens", "temperature", "top_p", "top_k", "min_p", "repetition_penalty",
                            "seed", "rag"}) {
    if (field == known && end < m.size() && (m[end] == ' ' || m[end] == ':' || m[end] == '.')) {
      return std::string(field);
    }
  }
  return "";
}

int HttpStatusOf(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk: return 200;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
    case absl::StatusCode::kFailedPrecondition: return 400;
    case absl::StatusCode::kUnauthenticated: return 401;
    case absl::StatusCode::kPermissionDenied: return 403;
    case absl::StatusCode::kNotFound: return 404;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kAborted: return 409;
    case absl::StatusCode::kResourceExhausted: return 429;
    case absl::StatusCode::kCancelled: return 499;
    case absl::StatusCode::kUnimplemented: return 501;
    case absl::StatusCode::kUnavailable: return 503;
    case absl::StatusCode::kDeadlineExceeded: return 504;
    default: return 500;
  }
}

nlohmann::json ErrorObject(const absl::Status& status, std::string_view param) {
  const int http = HttpStatusOf(status.code());
  const char* type = http == 400   ? "invalid_request_error"
                     : http == 401 ? "authentication_error"
                     : http == 403 ? "permission_error"
                     : http == 404 ? "not_found_error"
                     : http == 413 ? "invalid_request_error"
                     : http == 429 ? "rate_limit_error"
                     : http == 499 ? "cancelled"
                     : http == 503 ? "service_unavailable"
                     : http == 504 ? "timeout"
                                   : "server_error";
  std::string code = absl::AsciiStrToLower(absl::StatusCodeToString(status.code()));
  if (status.code() == absl::StatusCode::kNotFound && param == "model") code = "model_not_found";
  json error = {{"message", std::string(status.message())}, {"type", type}, {"code", code}};
  error["param"] = param.empty() ? json() : json(std::string(param));
  return {{"error", std::move(error)}};
}

std::string Dump(const nlohmann::json& value) {
  return value.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

namespace {

json Bytes(std::string_view s) {
  json out = json::array();
  for (unsigned char c : s) out.push_back(static_cast<int>(c));
  return out;
}

json ChatLogprobs(const std::vector<TokenInfo>& tokens, int top_n) {
  json content = json::array();
  for (const TokenInfo& t : tokens) {
    json top = json::array();
    for (size_t i = 0; i < t.top.size() && static_cast<int>(i) < top_n; ++i) {
      top.push_back({{"token", t.top[i].first}, {"logprob", t.top[i].second}, {"bytes", Bytes(t.top[i].first)}});
    }
    content.push_back({{"token", t.token}, {"logprob", t.logprob}, {"bytes", Bytes(t.token)}, {"top_logprobs", top}});
  }
  return {{"content", std::move(content)}, {"refusal", nullptr}};
}

// The legacy completions format: parallel arrays; text_offset counts bytes from the start of the completion.
json CompletionLogprobs(const std::vector<TokenInfo>& tokens, int top_n, size_t offset) {
  json out = {{"tokens", json::array()}, {"token_logprobs", json::array()}, {"top_logprobs", json::array()},
              {"text_offset", json::array()}};
  for (const TokenInfo& t : tokens) {
    out["tokens"].push_back(t.token);
    out["token_logprobs"].push_back(t.logprob);
    json top = json::object();
    for (size_t i = 0; i < t.top.size() && static_cast<int>(i) < top_n; ++i) top[t.top[i].first] = t.top[i].second;
    out["top_logprobs"].push_back(std::move(top));
    out["text_offset"].push_back(offset);
    offset += t.token.size();
  }
  return out;
}

json Envelope(const Result& r, const char* object) {
  return {{"id", r.id}, {"object", object}, {"created", r.created}, {"model", r.model},
          {"system_fingerprint", nullptr}};
}

json FinishReason(const Result& r) { return r.finish_reason.empty() ? json() : json(r.finish_reason); }

}  // namespace

nlohmann::json UsageObject(const engine::Usage& usage) {
  return {{"prompt_tokens", usage.prompt_tokens},
          {"completion_tokens", usage.completion_tokens},
          {"total_tokens", usage.prompt_tokens + usage.completion_tokens},
          {"prompt_tokens_details", {{"cached_tokens", usage.cached_prompt_tokens}}},
          {"energy_joules", usage.energy_joules},
          {"tensor_ops", usage.tensor_ops}};
}

nlohmann::json ChatCompletionObject(const Result& result, const AnswerOptions& answer) {
  json out = Envelope(result, "chat.completion");
  json choice = {{"index", 0},
                 {"message", {{"role", "assistant"}, {"content", result.text}, {"refusal", nullptr}}},
                 {"finish_reason", FinishReason(result)}};
  choice["logprobs"] = answer.logprobs ? ChatLogprobs(result.logprobs, answer.top_logprobs) : json();
  out["choices"] = json::array({std::move(choice)});
  out["usage"] = UsageObject(result.usage);
  if (!result.qrag.is_null()) out["qrag"] = result.qrag;
  return out;
}

nlohmann::json CompletionObject(const Result& result, const AnswerOptions& answer) {
  json out = Envelope(result, "text_completion");
  json choice = {{"index", 0}, {"text", result.text}, {"finish_reason", FinishReason(result)}};
  choice["logprobs"] = answer.logprobs ? CompletionLogprobs(result.logprobs, answer.top_logprobs, 0) : json();
  out["choices"] = json::array({std::move(choice)});
  out["usage"] = UsageObject(result.usage);
  if (!result.qrag.is_null()) out["qrag"] = result.qrag;
  return out;
}

nlohmann::json ChatCompletionChunk(const Result& result, const AnswerOptions& answer, bool first) {
  json out = Envelope(result, "chat.completion.chunk");
  json delta = json::object();
  if (first) delta["role"] = "assistant";
  if (!result.text.empty() || first) delta["content"] = result.text;
  json choice = {{"index", 0}, {"delta", std::move(delta)}, {"finish_reason", FinishReason(result)}};
  choice["logprobs"] =
      answer.logprobs && !result.logprobs.empty() ? ChatLogprobs(result.logprobs, answer.top_logprobs) : json();
  out["choices"] = json::array({std::move(choice)});
  if (answer.include_usage) out["usage"] = nullptr;
  if (!result.qrag.is_null()) out["qrag"] = result.qrag;
  return out;
}

nlohmann::json CompletionChunk(const Result& result, const AnswerOptions& answer) {
  json out = Envelope(result, "text_completion");
  json choice = {{"index", 0}, {"text", result.text}, {"finish_reason", FinishReason(result)}};
  choice["logprobs"] = answer.logprobs && !result.logprobs.empty()
                           ? CompletionLogprobs(result.logprobs, answer.top_logprobs, 0)
                           : json();
  out["choices"] = json::array({std::move(choice)});
  if (answer.include_usage) out["usage"] = nullptr;
  if (!result.qrag.is_null()) out["qrag"] = result.qrag;
  return out;
}

nlohmann::json UsageChunk(const Result& result, bool chat) {
  json out = Envelope(result, chat ? "chat.completion.chunk" : "text_completion");
  out["choices"] = json::array();
  out["usage"] = UsageObject(result.usage);
  if (!result.qrag.is_null()) out["qrag"] = result.qrag;
  return out;
}

std::string Base64(std::string_view bytes) {
  static constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const uint32_t v = (static_cast<uint8_t>(bytes[i]) << 16) | (static_cast<uint8_t>(bytes[i + 1]) << 8) |
                       static_cast<uint8_t>(bytes[i + 2]);
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += kAlphabet[(v >> 6) & 63];
    out += kAlphabet[v & 63];
  }
  if (const size_t rest = bytes.size() - i; rest > 0) {
    uint32_t v = static_cast<uint8_t>(bytes[i]) << 16;
    if (rest == 2) v |= static_cast<uint8_t>(bytes[i + 1]) << 8;
    out += kAlphabet[v >> 18];
    out += kAlphabet[(v >> 12) & 63];
    out += rest == 2 ? kAlphabet[(v >> 6) & 63] : '=';
    out += '=';
  }
  return out;
}

nlohmann::json EmbeddingsObject(const std::string& model, const std::vector<float>& values, int dim, bool base64,
                                int64_t prompt_tokens) {
  json data = json::array();
  const size_t n = dim > 0 ? values.size() / dim : 0;
  for (size_t i = 0; i < n; ++i) {
    json item = {{"object", "embedding"}, {"index", i}};
    const float* row = values.data() + i * dim;
    if (base64) {
      static_assert(std::numeric_limits<float>::is_iec559);
      std::string bytes(dim * sizeof(float), '\0');
      std::memcpy(bytes.data(), row, bytes.size());  // little-endian on every platform qrag builds for
      item["embedding"] = Base64(bytes);
    } else {
      item["embedding"] = std::vector<float>(row, row + dim);
    }
    data.push_back(std::move(item));
  }
  return {{"object", "list"},
          {"data", std::move(data)},
          {"model", model},
          {"usage", {{"prompt_tokens", prompt_tokens}, {"total_tokens", prompt_tokens}}}};
}

}  // namespace qrag::api::openai
