// `qrag-quant report`: the number-representation study of issue 8, written as a Markdown report with CSV
// data and PNG plots (made by quant_report_plots.py with matplotlib).
//
// Sections (each a table, a plot, and the command that made it):
//  1. relative rounding error of E4M3, E5M2, Log 4.3, INT8, MXFP4, NVFP4 (and MXFP6/MXFP8/MXINT8) over a
//     log-uniform sweep; the intrinsic worst/mean error of the scalar formats over their own ranges;
//  2. SQNR vs bits (2..8) for max / OCTAV / MSE-sweep clipping on Gaussian, Laplace, Student-t(3) samples and
//     on the real linear weights of the model (and of the encoder when given);
//  3. INT4 SQNR vs scaling granularity (per channel, vectors of 64/32/16) and per-vector scale bit width
//     (fp32, two-level 8/6/4-bit);
//  4. end-model effect of each scheme on the model: logits KL and top-1 agreement vs our fp32 run (served
//     schemes through the CPU backend; Log 4.3 and 2:4 as emulated fp32 weights), and weight SQNR for the
//     model and the encoder. Retrieval quality (SciFact nDCG@10) is left pending: it needs the RAG encoder.
#ifndef QRAG_SERVER_TOOLS_QUANT_REPORT_H_
#define QRAG_SERVER_TOOLS_QUANT_REPORT_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"

namespace qrag::tools {

struct QuantReportOptions {
  std::string model;    // a llama2.c stories260K.bin (its expected/*.tokens.txt give the scored sequences)
  std::string encoder;  // all-MiniLM-L6-v2 model.safetensors; empty: the encoder rows say they were skipped
  // bench/scifact_schemes.sh's output directory (<scheme>.json with nDCG@10 / recall@100 per scheme);
  // empty or a missing file: that scheme's SciFact cells say "not measured" and name the command.
  std::string scifact_dir;
  std::string out = "docs/quantization-report.md";  // data and PNGs go to <out without .md>/
  std::string plot_script;                           // quant_report_plots.py
  std::string python = "/usr/bin/python3";
  int64_t samples = 1 << 16;  // synthetic samples per configuration
  uint64_t seed = 1;
  std::string command;  // the command line that made the report, quoted in it
};

// Errors: the model's / encoder's load errors; INVALID_ARGUMENT naming a SciFact result file that does not
// parse or lacks the figures; NOT_FOUND naming a missing token file; INTERNAL naming the
// output file that cannot be written, or the plot script's failure (with its exit status).
absl::Status WriteQuantReport(const QuantReportOptions& options);

}  // namespace qrag::tools

#endif  // QRAG_SERVER_TOOLS_QUANT_REPORT_H_
