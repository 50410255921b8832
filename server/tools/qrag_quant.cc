// qrag-quant: the quantization toolkit's command line (issue 8).
//
//   qrag-quant study --distribution gaussian|laplace|student-t --bits B --clip max|octav|mse|percentile
//                    --granularity tensor|channel|vectorN [--format F] [--scale-bits M] [--samples N]
//                    [--seed S] [--cols C] [--percentile P] [--dof D] [--json]
//   qrag-quant quantize --model PATH --out DIR [--vector-size 32] [--clip octav|max|mse] [--tokenizer PATH]
//   qrag-quant report --model PATH [--encoder PATH] [--scifact-dir DIR] [--out docs/quantization-report.md]
//                     [--samples N]
//
// Exit status 0 on success, 2 for bad command-line usage, 1 for any other error.
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "absl/status/status.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "server/common/cli.h"
#include "server/common/status.h"
#include "server/model/host_tensor.h"
#include "server/model/tokenizer.h"
#include "server/model/quantized_checkpoint.h"
#include "server/quant/study.h"
#include "server/tools/quant_report.h"

#ifndef QRAG_QUANT_PLOT_SCRIPT
#define QRAG_QUANT_PLOT_SCRIPT "quant_report_plots.py"
#endif

namespace qrag {
namespace {

constexpr char kProgram[] = "qrag-quant";

constexpr char kUsage[] = R"(usage: qrag-quant COMMAND [options]

Commands:
  study      quantize seeded synthetic samples and print the clip, SQNR and relative errors
  quantize   write a w4 quantized checkpoint (HF directory: config.json + model.safetensors with
             int4 codes, per-vector scales and quantization metadata) that qrag-run/qrag-server load
  report     write the quantization report (Markdown + CSV + PNG plots)

study options:
  --distribution D    gaussian | laplace | student-t (default gaussian)
  --dof N             Student-t degrees of freedom (default 3)
  --bits B            integer bits, 2..16 (default 4); shorthand for --format intB
  --format F          intB | e4m3 | e5m2 | e2m3 | e3m2 | e2m1 | logM.F (e.g. log4.3)
  --clip C            max | octav | mse | percentile (default max)
  --percentile P      for --clip percentile, in (0, 100] (default 99.9)
  --granularity G     tensor | channel | vectorN, e.g. vector32 (default tensor)
  --scale-bits M      per-vector scales as M-bit integers x fp32 per channel (VS-Quant); 0 = fp32
  --samples N         sample count (default 65536)
  --seed S            random seed (default 1)
  --cols C            row length (the reduction dimension) for channel/vector scaling (default 256)
  --json              print one JSON object instead of text

quantize options:
  --model PATH        llama2.c .bin or Hugging Face directory (required)
  --out DIR           output directory, created if missing (required)
  --vector-size N     weights per scale (default 32)
  --clip C            octav | max | mse (default octav)
  --tokenizer PATH    tokenizer to copy into DIR (default: the model's .model/.json tokenizer, if any)

report options:
  --model PATH        stories260K.bin (with expected/*.tokens.txt next to it) (required)
  --encoder PATH      all-MiniLM-L6-v2 model.safetensors (optional)
  --scifact-dir DIR   SciFact nDCG@10 per scheme from bench/scifact_schemes.sh DIR (optional)
  --out PATH          report file (default docs/quantization-report.md); data and plots go to PATH
                      without .md
  --samples N         synthetic samples per configuration (default 65536)
  --seed S            seed (default 1)
  --plot-script PATH  plotting script (default: the source tree's server/tools/quant_report_plots.py)
)";

[[noreturn]] void UsageError(const std::string& msg) { cli::UsageError(kProgram, msg); }

template <typename T>
T Number(const std::string& flag, const std::string& text) {
  return cli::ParseNumber<T>(kProgram, flag, text);
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "%s: %s\n", kProgram, std::string(s.message()).c_str());
  return 1;
}

int Study(int argc, char** argv) {
  quant::StudyOptions o;
  bool json = false;
  std::string format;
  int bits = 4;
  for (int i = 2; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--json") {
      json = true;
      continue;
    }
    const std::string v = cli::FlagValue(kProgram, argc, argv, &i, &flag);
    if (flag == "--distribution") {
      auto d = quant::ParseDistribution(v);
      if (!d.ok()) UsageError(std::string(d.status().message()));
      o.distribution = *d;
    } else if (flag == "--dof") {
      o.dof = Number<int>(flag, v);
      if (o.dof < 1) UsageError("--dof must be >= 1");
    } else if (flag == "--bits") {
      bits = Number<int>(flag, v);
      if (bits < 2 || bits > 16) UsageError("--bits must be in 2..16");
    } else if (flag == "--format") {
      format = v;
    } else if (flag == "--clip") {
      auto c = quant::ParseClipMethod(v);
      if (!c.ok()) UsageError(std::string(c.status().message()));
      o.quant.clip.method = *c;
    } else if (flag == "--percentile") {
      o.quant.clip.percentile = Number<double>(flag, v);
      if (!(o.quant.clip.percentile > 0 && o.quant.clip.percentile <= 100)) UsageError("--percentile must be in (0, 100]");
    } else if (flag == "--granularity") {
      if (absl::Status s = quant::ParseGranularity(v, &o.quant); !s.ok()) UsageError(std::string(s.message()));
    } else if (flag == "--scale-bits") {
      o.quant.scale_bits = Number<int>(flag, v);
      if (o.quant.scale_bits < 0 || o.quant.scale_bits > 16) UsageError("--scale-bits must be in 0..16");
    } else if (flag == "--samples") {
      o.samples = Number<int64_t>(flag, v);
      if (o.samples < 1 || o.samples > (int64_t{1} << 28)) UsageError("--samples must be in 1..268435456");
    } else if (flag == "--seed") {
      o.seed = Number<uint64_t>(flag, v);
    } else if (flag == "--cols") {
      o.cols = Number<int64_t>(flag, v);
      if (o.cols < 1) UsageError("--cols must be >= 1");
    } else {
      UsageError(absl::StrCat("study: unknown option ", flag));
    }
  }
  if (format.empty()) format = absl::StrCat("int", bits);
  auto f = quant::ParseScalarFormat(format);
  if (!f.ok()) UsageError(std::string(f.status().message()));
  o.quant.format = *f;
  if (o.quant.clip.method == quant::ClipMethod::kOctav && !o.quant.format.is_int()) {
    UsageError(absl::StrCat("--clip octav needs an integer format (got ", format, ")"));
  }
  if (o.quant.scale_bits > 0 && o.quant.granularity != quant::Granularity::kVector) {
    UsageError("--scale-bits needs --granularity vectorN");
  }
  auto r = quant::RunStudy(o);
  if (!r.ok()) return Fail(r.status());
  if (json) {
    std::printf("%s\n", quant::StudyJson(o, *r).c_str());
  } else {
    std::printf("%s %s, %s clip, %s scaling, %lld samples (seed %llu)\n", quant::DistributionName(o.distribution),
                o.quant.format.Name().c_str(), quant::ClipMethodName(o.quant.clip.method),
                quant::GranularityName(o.quant).c_str(), static_cast<long long>(r->samples),
                static_cast<unsigned long long>(o.seed));
    std::printf("clip            %.4f sigma (sample sigma %.6g)\n", r->clip_sigma, r->sample_sigma);
    std::printf("SQNR            %.3f dB\n", r->error.sqnr_db);
    std::printf("worst rel. err  %.6g\n", r->error.worst_rel_error);
    std::printf("mean rel. err   %.6g\n", r->error.mean_rel_error);
  }
  return 0;
}

int Quantize(int argc, char** argv) {
  std::string model_path, out, tokenizer;
  model::QuantizedCheckpointOptions o;
  for (int i = 2; i < argc; ++i) {
    std::string flag = argv[i];
    const std::string v = cli::FlagValue(kProgram, argc, argv, &i, &flag);
    if (flag == "--model") {
      model_path = v;
    } else if (flag == "--out") {
      out = v;
    } else if (flag == "--tokenizer") {
      tokenizer = v;
    } else if (flag == "--vector-size") {
      o.w4.vector_size = Number<int>(flag, v);
      if (o.w4.vector_size < 1 || o.w4.vector_size > 4096) UsageError("--vector-size must be in 1..4096");
    } else if (flag == "--clip") {
      auto c = quant::ParseClipMethod(v);
      if (!c.ok()) UsageError(std::string(c.status().message()));
      if (*c == quant::ClipMethod::kPercentile) UsageError("quantize: --clip must be octav, max or mse");
      o.w4.clip = *c;
    } else {
      UsageError(absl::StrCat("quantize: unknown option ", flag));
    }
  }
  if (model_path.empty()) UsageError("quantize: --model PATH is required");
  if (out.empty()) UsageError("quantize: --out DIR is required");
  auto model = model::LoadCheckpoint(model_path);
  if (!model.ok()) return Fail(model.status());
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) return Fail(absl::InternalError(absl::StrCat(out, ": cannot create: ", ec.message())));
  if (absl::Status s = model::WriteQuantizedCheckpoint(*model, out, o); !s.ok()) return Fail(s);
  // The HF directory finds its tokenizer as tokenizer.model or tokenizer.json.
  if (tokenizer.empty()) {
    const fs::path dir = fs::is_directory(model_path) ? fs::path(model_path) : fs::path(model_path).parent_path();
    for (const std::string& name : {std::string("tokenizer.json"), std::string("tokenizer.model"),
                                    absl::StrCat("tok", model->config.vocab_size, ".model")}) {
      if (fs::exists(dir / name, ec)) {
        tokenizer = (dir / name).string();
        break;
      }
    }
  }
  if (!tokenizer.empty()) {
    const std::string target = absl::EndsWith(tokenizer, ".json") ? "tokenizer.json" : "tokenizer.model";
    fs::copy_file(tokenizer, fs::path(out) / target, fs::copy_options::overwrite_existing, ec);
    if (ec) return Fail(absl::InternalError(absl::StrCat("copying ", tokenizer, ": ", ec.message())));
  } else {
    std::fprintf(stderr, "%s: no tokenizer found next to the model; pass --tokenizer to qrag-run\n", kProgram);
  }
  std::printf("wrote %s (w4: int4, %d-element vectors, %s clip)\n", out.c_str(), o.w4.vector_size,
              quant::ClipMethodName(o.w4.clip));
  return 0;
}

int Report(int argc, char** argv) {
  tools::QuantReportOptions o;
  o.plot_script = QRAG_QUANT_PLOT_SCRIPT;
  std::string command = "qrag-quant report";
  for (int i = 2; i < argc; ++i) {
    std::string flag = argv[i];
    const std::string v = cli::FlagValue(kProgram, argc, argv, &i, &flag);
    if (flag == "--model") o.model = v;
    else if (flag == "--encoder") o.encoder = v;
    else if (flag == "--scifact-dir") o.scifact_dir = v;
    else if (flag == "--out") o.out = v;
    else if (flag == "--plot-script") o.plot_script = v;
    else if (flag == "--python") o.python = v;
    else if (flag == "--samples") {
      o.samples = Number<int64_t>(flag, v);
      if (o.samples < 1024 || o.samples > (int64_t{1} << 26)) UsageError("--samples must be in 1024..67108864");
    } else if (flag == "--seed") o.seed = Number<uint64_t>(flag, v);
    else UsageError(absl::StrCat("report: unknown option ", flag));
    if (flag != "--plot-script" && flag != "--python") absl::StrAppend(&command, " ", flag, " ", v);
  }
  if (o.model.empty()) UsageError("report: --model PATH is required");
  o.command = command;
  if (absl::Status s = tools::WriteQuantReport(o); !s.ok()) return Fail(s);
  std::printf("wrote %s\n", o.out.c_str());
  return 0;
}

int Main(int argc, char** argv) {
  if (argc < 2) UsageError("a command is required: study, quantize or report");
  const std::string cmd = argv[1];
  if (cmd == "--help" || cmd == "-h" || cmd == "help") {
    std::fputs(kUsage, stdout);
    return 0;
  }
  for (int i = 2; i < argc; ++i) {
    if (std::string(argv[i]) == "--help" || std::string(argv[i]) == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
  }
  if (cmd == "study") return Study(argc, argv);
  if (cmd == "quantize") return Quantize(argc, argv);
  if (cmd == "report") return Report(argc, argv);
  UsageError(absl::StrCat("unknown command '", cmd, "': use study, quantize or report"));
}

}  // namespace
}  // namespace qrag

int main(int argc, char** argv) { return qrag::Main(argc, argv); }
