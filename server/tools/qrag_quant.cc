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
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

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

absl::Status Usage(absl::string_view message) { return absl::InvalidArgumentError(message); }

struct StudyFlags {
  quant::StudyOptions study;
  int bits = 4;
  std::string format;               // empty: intB with B = --bits
  std::string granularity = "tensor";
  bool json = false;
};

void AddStudyFlags(CLI::App& app, StudyFlags* f) {
  quant::StudyOptions& o = f->study;
  cli::AddParsed<quant::Distribution>(app, "--distribution", &o.distribution, quant::ParseDistribution,
                                      "samples from this distribution")
      ->type_name("{gaussian,laplace,student-t}")
      ->default_str(quant::DistributionName(o.distribution));
  cli::AddNumber(app, "--dof", &o.dof, "Student-t degrees of freedom, >= 1");
  cli::AddNumber(app, "--bits", &f->bits, "integer bits, 2..16; shorthand for --format intB");
  app.add_option("--format", f->format, "intB | e4m3 | e5m2 | e2m3 | e3m2 | e2m1 | logM.F (e.g. log4.3)")
      ->type_name("F");
  cli::AddParsed<quant::ClipMethod>(app, "--clip", &o.quant.clip.method, quant::ParseClipMethod, "clipping method")
      ->type_name("{max,octav,mse,percentile}")
      ->default_str(quant::ClipMethodName(o.quant.clip.method));
  cli::AddNumber(app, "--percentile", &o.quant.clip.percentile, "for --clip percentile, in (0, 100]");
  app.add_option("--granularity", f->granularity, "one scale per tensor, channel (row) or vector of N, e.g. vector32")
      ->type_name("{tensor,channel,vectorN}");
  cli::AddNumber(app, "--scale-bits", &o.quant.scale_bits,
                 "per-vector scales as M-bit integers x fp32 per channel (VS-Quant), 0..16; 0 = fp32");
  cli::AddNumber(app, "--samples", &o.samples, "sample count, 1..268435456");
  cli::AddNumber(app, "--seed", &o.seed, "random seed");
  cli::AddNumber(app, "--cols", &o.cols, "row length (the reduction dimension) for channel/vector scaling");
  app.add_flag("--json", f->json, "print one JSON object instead of text");
}

// Checks the flags and settles the format and granularity into f->study.
absl::Status ValidateStudyFlags(StudyFlags* f) {
  quant::StudyOptions& o = f->study;
  if (o.dof < 1) return Usage("--dof must be >= 1");
  if (f->bits < 2 || f->bits > 16) return Usage("--bits must be in 2..16");
  if (!(o.quant.clip.percentile > 0 && o.quant.clip.percentile <= 100)) {
    return Usage("--percentile must be in (0, 100]");
  }
  QRAG_RETURN_IF_ERROR(quant::ParseGranularity(f->granularity, &o.quant));
  if (o.quant.scale_bits < 0 || o.quant.scale_bits > 16) return Usage("--scale-bits must be in 0..16");
  if (o.samples < 1 || o.samples > (int64_t{1} << 28)) return Usage("--samples must be in 1..268435456");
  if (o.cols < 1) return Usage("--cols must be >= 1");
  const std::string format = f->format.empty() ? absl::StrCat("int", f->bits) : f->format;
  QRAG_ASSIGN_OR_RETURN(o.quant.format, quant::ParseScalarFormat(format));
  if (o.quant.clip.method == quant::ClipMethod::kOctav && !o.quant.format.is_int()) {
    return Usage(absl::StrCat("--clip octav needs an integer format (got ", format, ")"));
  }
  if (o.quant.scale_bits > 0 && o.quant.granularity != quant::Granularity::kVector) {
    return Usage("--scale-bits needs --granularity vectorN");
  }
  return absl::OkStatus();
}

struct QuantizeFlags {
  std::string model, out, tokenizer;
  model::QuantizedCheckpointOptions checkpoint;
};

void AddQuantizeFlags(CLI::App& app, QuantizeFlags* f) {
  app.add_option("--model", f->model, "llama2.c .bin or Hugging Face directory (required)")->type_name("PATH");
  app.add_option("--out", f->out, "output directory, created if missing (required)")->type_name("DIR");
  cli::AddNumber(app, "--vector-size", &f->checkpoint.w4.vector_size, "weights per scale, 1..4096");
  cli::AddParsed<quant::W4Grid>(app, "--grid", &f->checkpoint.w4.grid, quant::ParseW4Grid,
                                "4-bit grid of each vector: scale + minimum, or symmetric INT4")
      ->type_name("{asymmetric,symmetric}")
      ->default_str(quant::W4GridName(f->checkpoint.w4.grid));
  cli::AddParsed<quant::ClipMethod>(app, "--clip", &f->checkpoint.w4.clip, quant::ParseClipMethod,
                                    "clipping method of each vector (symmetric grid)")
      ->type_name("{octav,max,mse}")
      ->default_str(quant::ClipMethodName(f->checkpoint.w4.clip));
  app.add_option("--tokenizer", f->tokenizer, "tokenizer to copy into DIR (default: the model's .model/.json, if any)")
      ->type_name("PATH");
}

absl::Status ValidateQuantizeFlags(const QuantizeFlags& f) {
  if (f.checkpoint.w4.vector_size < 1 || f.checkpoint.w4.vector_size > 4096) {
    return Usage("--vector-size must be in 1..4096");
  }
  if (f.checkpoint.w4.clip == quant::ClipMethod::kPercentile) {
    return Usage("quantize: --clip must be octav, max or mse");
  }
  if (f.model.empty()) return Usage("quantize: --model PATH is required");
  if (f.out.empty()) return Usage("quantize: --out DIR is required");
  return absl::OkStatus();
}

void AddReportFlags(CLI::App& app, tools::QuantReportOptions* o) {
  app.add_option("--model", o->model, "stories260K.bin, with expected/*.tokens.txt next to it (required)")
      ->type_name("PATH");
  app.add_option("--encoder", o->encoder, "all-MiniLM-L6-v2 model.safetensors (optional)")->type_name("PATH");
  app.add_option("--scifact-dir", o->scifact_dir, "SciFact nDCG@10 per scheme from bench/scifact_schemes.sh DIR")
      ->type_name("DIR");
  app.add_option("--out", o->out, "report file; data and plots go to PATH without .md")->type_name("PATH");
  cli::AddNumber(app, "--samples", &o->samples, "synthetic samples per configuration, 1024..67108864");
  cli::AddNumber(app, "--seed", &o->seed, "seed");
  app.add_option("--plot-script", o->plot_script, "plotting script")->type_name("PATH");
  app.add_option("--python", o->python, "python3 with matplotlib that runs it")->type_name("PATH");
}

absl::Status ValidateReportFlags(const tools::QuantReportOptions& o) {
  if (o.samples < 1024 || o.samples > (int64_t{1} << 26)) return Usage("--samples must be in 1024..67108864");
  if (o.model.empty()) return Usage("report: --model PATH is required");
  return absl::OkStatus();
}

// The report's command line as it is quoted in the report: the flags as given (each "--flag value"), without
// the machine-specific --plot-script and --python.
std::string ReportCommand(const std::vector<std::string>& args) {
  std::string command = "qrag-quant report";
  for (size_t i = 2; i < args.size(); ++i) {
    std::string flag = args[i], value;
    if (const size_t eq = flag.find('='); eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag.resize(eq);
    } else if (i + 1 < args.size()) {
      value = args[++i];
    }
    if (flag != "--plot-script" && flag != "--python") absl::StrAppend(&command, " ", flag, " ", value);
  }
  return command;
}

int Fail(const absl::Status& s) {
  std::fprintf(stderr, "%s: %s\n", kProgram, std::string(s.message()).c_str());
  return 1;
}

int Study(const StudyFlags& f) {
  const quant::StudyOptions& o = f.study;
  auto r = quant::RunStudy(o);
  if (!r.ok()) return Fail(r.status());
  if (f.json) {
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

int Quantize(const QuantizeFlags& f) {
  const std::string& model_path = f.model;
  const std::string& out = f.out;
  const model::QuantizedCheckpointOptions& o = f.checkpoint;
  std::string tokenizer = f.tokenizer;
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
  if (o.w4.grid == quant::W4Grid::kSymmetric) {
    std::printf("wrote %s (w4: symmetric int4, %d-element vectors, %s clip)\n", out.c_str(), o.w4.vector_size,
                quant::ClipMethodName(o.w4.clip));
  } else {
    std::printf("wrote %s (w4: asymmetric, scale + minimum per %d-element vector)\n", out.c_str(),
                o.w4.vector_size);
  }
  return 0;
}

int Report(const tools::QuantReportOptions& o) {
  if (absl::Status s = tools::WriteQuantReport(o); !s.ok()) return Fail(s);
  std::printf("wrote %s\n", o.out.c_str());
  return 0;
}

int Main(int argc, char** argv) {
  std::unique_ptr<CLI::App> app = cli::NewApp(kProgram, "The quantization toolkit's command line.");
  app->footer("Run qrag-quant COMMAND --help for the options of a command.");
  CLI::App* study_command =
      app->add_subcommand("study", "quantize seeded synthetic samples and print the clip, SQNR and relative errors");
  CLI::App* quantize_command = app->add_subcommand(
      "quantize", "write a w4 quantized checkpoint (HF directory: config.json + model.safetensors with int4 codes, "
                  "per-vector scales and quantization metadata) that qrag-run/qrag-server load");
  CLI::App* report_command =
      app->add_subcommand("report", "write the quantization report (Markdown + CSV + PNG plots)");
  StudyFlags study;
  AddStudyFlags(*study_command, &study);
  QuantizeFlags quantize;
  AddQuantizeFlags(*quantize_command, &quantize);
  tools::QuantReportOptions report;
  report.plot_script = QRAG_QUANT_PLOT_SCRIPT;
  AddReportFlags(*report_command, &report);

  const std::vector<std::string> args(argv, argv + argc);
  cli::ParseFlagsOrExit(*app, args);  // exactly one command was given
  if (study_command->parsed()) {
    cli::ExitOnUsageError(kProgram, ValidateStudyFlags(&study));
    return Study(study);
  }
  if (quantize_command->parsed()) {
    cli::ExitOnUsageError(kProgram, ValidateQuantizeFlags(quantize));
    return Quantize(quantize);
  }
  cli::ExitOnUsageError(kProgram, ValidateReportFlags(report));
  report.command = ReportCommand(args);
  return Report(report);
}

}  // namespace
}  // namespace qrag

int main(int argc, char** argv) { return qrag::Main(argc, argv); }
