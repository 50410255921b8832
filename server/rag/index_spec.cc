#include "server/rag/index_spec.h"

#include <algorithm>

#include "absl/strings/str_cat.h"
#include "nlohmann/json.hpp"
#include "server/common/echo.h"
#include "server/common/status.h"

namespace qrag::rag {
namespace {

constexpr int kMaxHnswM = 128;
constexpr int kMaxEf = 4096;
constexpr int kMaxNlist = 65536;
constexpr int64_t kMaxAutoThreshold = 1'000'000'000;

bool UsesHnsw(IndexKind k) { return k == IndexKind::kHnsw || k == IndexKind::kAuto; }

absl::Status CheckRange(const char* field, int64_t value, int64_t lo, int64_t hi, const char* what) {
  if (value < lo || value > hi) {
    return absl::InvalidArgumentError(
        absl::StrCat("index.", field, " must be in [", lo, ", ", hi, "] (", what, "), got ", value));
  }
  return absl::OkStatus();
}

absl::Status NotFor(const char* field, IndexKind kind, const char* used_by) {
  return absl::InvalidArgumentError(absl::StrCat("index.", field, " applies to ", used_by, " indexes, not ",
                                                 IndexKindName(kind), ": leave it 0 or choose that kind"));
}

}  // namespace

const char* IndexKindName(IndexKind kind) {
  switch (kind) {
    case IndexKind::kExact: return "exact";
    case IndexKind::kHnsw: return "hnsw";
    case IndexKind::kIvf: return "ivf";
    case IndexKind::kAuto: return "auto";
  }
  return "?";
}

absl::StatusOr<IndexKind> ParseIndexKind(const std::string& name) {
  for (IndexKind k : {IndexKind::kExact, IndexKind::kHnsw, IndexKind::kIvf, IndexKind::kAuto}) {
    if (name == IndexKindName(k)) return k;
  }
  return absl::InvalidArgumentError(absl::StrCat("index kind ", Echo(name), " is not one of exact, hnsw, ivf, auto"));
}

absl::StatusOr<IndexSpec> ResolveIndexSpec(const IndexSpec& in) {
  IndexSpec s = in;
  const bool hnsw = UsesHnsw(s.kind), ivf = s.kind == IndexKind::kIvf;
  if (!hnsw) {
    if (s.hnsw_m != 0) return NotFor("hnsw_m", s.kind, "hnsw and auto");
    if (s.hnsw_ef_construction != 0) return NotFor("hnsw_ef_construction", s.kind, "hnsw and auto");
    if (s.hnsw_ef_search != 0) return NotFor("hnsw_ef_search", s.kind, "hnsw and auto");
  }
  if (!ivf) {
    if (s.ivf_nlist != 0) return NotFor("ivf_nlist", s.kind, "ivf");
    if (s.ivf_nprobe != 0) return NotFor("ivf_nprobe", s.kind, "ivf");
  }
  if (s.kind != IndexKind::kAuto && s.auto_threshold != 0) return NotFor("auto_threshold", s.kind, "auto");
  if (hnsw) {
    if (s.hnsw_m == 0) s.hnsw_m = kDefaultHnswM;
    if (s.hnsw_ef_construction == 0) s.hnsw_ef_construction = kDefaultHnswEfConstruction;
    if (s.hnsw_ef_search == 0) s.hnsw_ef_search = kDefaultHnswEfSearch;
    QRAG_RETURN_IF_ERROR(CheckRange("hnsw_m", s.hnsw_m, 4, kMaxHnswM, "links per graph node; 0 for 32"));
    QRAG_RETURN_IF_ERROR(CheckRange("hnsw_ef_construction", s.hnsw_ef_construction, 8, kMaxEf,
                                    "candidates kept while inserting; 0 for 128"));
    QRAG_RETURN_IF_ERROR(CheckRange("hnsw_ef_search", s.hnsw_ef_search, 1, kMaxEf,
                                    "candidates kept while searching; 0 for 128"));
  }
  if (ivf) {
    if (s.ivf_nlist == 0) s.ivf_nlist = kDefaultIvfNlist;
    QRAG_RETURN_IF_ERROR(CheckRange("ivf_nlist", s.ivf_nlist, 1, kMaxNlist, "k-means lists; 0 for 128"));
    if (s.ivf_nprobe == 0) s.ivf_nprobe = std::min(kDefaultIvfNprobe, s.ivf_nlist);
    QRAG_RETURN_IF_ERROR(
        CheckRange("ivf_nprobe", s.ivf_nprobe, 1, s.ivf_nlist, "lists scanned per query, at most ivf_nlist"));
  }
  if (s.kind == IndexKind::kAuto) {
    if (s.auto_threshold == 0) s.auto_threshold = kDefaultAutoThreshold;
    QRAG_RETURN_IF_ERROR(CheckRange("auto_threshold", s.auto_threshold, 1, kMaxAutoThreshold,
                                    "chunks from which auto switches from exact to hnsw; 0 for 20000"));
  }
  return s;
}

std::string IndexSpecToJson(const IndexSpec& s) {
  nlohmann::json j = {{"kind", IndexKindName(s.kind)}};
  if (UsesHnsw(s.kind)) {
    j["hnsw_m"] = s.hnsw_m;
    j["hnsw_ef_construction"] = s.hnsw_ef_construction;
    j["hnsw_ef_search"] = s.hnsw_ef_search;
  }
  if (s.kind == IndexKind::kIvf) {
    j["ivf_nlist"] = s.ivf_nlist;
    j["ivf_nprobe"] = s.ivf_nprobe;
  }
  if (s.kind == IndexKind::kAuto) j["auto_threshold"] = s.auto_threshold;
  return j.dump();
}

absl::StatusOr<IndexSpec> IndexSpecFromJson(const std::string& json) {
  if (json.empty()) return IndexSpec{};
  const nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  auto bad = [&](const std::string& why) {
    return absl::DataLossError(absl::StrCat("stored index spec '", json.substr(0, 200), "': ", why));
  };
  if (!j.is_object() || !j.contains("kind") || !j["kind"].is_string()) return bad("not an object with a \"kind\"");
  absl::StatusOr<IndexKind> kind = ParseIndexKind(j["kind"].get<std::string>());
  if (!kind.ok()) return bad(std::string(kind.status().message()));
  IndexSpec s;
  s.kind = *kind;
  auto field = [&](const char* name, auto* out) -> bool {
    if (!j.contains(name)) return true;
    if (!j[name].is_number_integer()) return false;
    *out = j[name].get<std::decay_t<decltype(*out)>>();
    return true;
  };
  if (!field("hnsw_m", &s.hnsw_m) || !field("hnsw_ef_construction", &s.hnsw_ef_construction) ||
      !field("hnsw_ef_search", &s.hnsw_ef_search) || !field("ivf_nlist", &s.ivf_nlist) ||
      !field("ivf_nprobe", &s.ivf_nprobe) || !field("auto_threshold", &s.auto_threshold)) {
    return bad("a parameter is not an integer");
  }
  absl::StatusOr<IndexSpec> resolved = ResolveIndexSpec(s);
  if (!resolved.ok()) return bad(std::string(resolved.status().message()));
  return *resolved;
}

std::string IndexSpecToString(const IndexSpec& s) {
  switch (s.kind) {
    case IndexKind::kExact:
      return "exact";
    case IndexKind::kHnsw:
      return absl::StrCat("hnsw m=", s.hnsw_m, " ef_construction=", s.hnsw_ef_construction,
                          " ef_search=", s.hnsw_ef_search);
    case IndexKind::kIvf:
      return absl::StrCat("ivf nlist=", s.ivf_nlist, " nprobe=", s.ivf_nprobe);
    case IndexKind::kAuto:
      return absl::StrCat("auto threshold=", s.auto_threshold, " (then hnsw m=", s.hnsw_m,
                          " ef_construction=", s.hnsw_ef_construction, " ef_search=", s.hnsw_ef_search, ")");
  }
  return "?";
}

}  // namespace qrag::rag
