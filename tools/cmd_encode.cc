// hamdb encode: encodes image files with a trained encoder artifact and
// prints, per file, the instance code and its decoding. A file that cannot
// be read or decoded gives an error line and counts towards the exit status;
// the other files are still encoded.
#include <torch/torch.h>

#include <cstdio>
#include <nlohmann/json.hpp>

#include "encoder/encoder.h"
#include "encoder/inference_process.h"
#include "encoder/torch_threads.h"
#include "core/binary_code.h"
#include "tools/cli_common.h"
#include "tools/commands.h"

namespace hamdb::tools {

namespace {

struct EncodeArgs {
  std::string model;
  std::vector<std::string> files;
  size_t batch = 256;
  int threads = 0;
  bool json = false;
};

int RunEncode(const EncodeArgs& a) {
  SetTorchThreads(a.threads);
  auto enc = Encoder::Load(a.model);
  if (!enc.ok()) return Fail(enc.status());
  TuneProcessForInference();
  const Encoder& e = **enc;
  const auto& names = e.class_names();
  if (!a.json) std::printf("# path\tcode\tclass\texact\tdistance\tood\tconfidence\tscore\n");
  size_t errors = 0, ood = 0, done = 0;
  const size_t batch = std::max<size_t>(1, a.batch);
  for (size_t s = 0; s < a.files.size(); s += batch) {
    const size_t end = std::min(a.files.size(), s + batch);
    // One output line per input file, printed in input order.
    std::vector<std::string> lines(end - s);
    std::vector<Image> images;
    std::vector<size_t> slots;
    for (size_t i = s; i < end; ++i) {
      auto im = ReadImageFile(a.files[i]);
      if (!im.ok()) {
        ++errors;
        lines[i - s] = a.json ? nlohmann::json({{"path", a.files[i]}, {"error", im.status().ToString()}}).dump()
                              : a.files[i] + "\terror\t" + im.status().ToString();
        continue;
      }
      images.push_back(std::move(im).value());
      slots.push_back(i - s);
    }
    auto r = e.Encode(images);
    if (!r.ok()) return Fail(r.status());
    for (size_t i = 0; i < r->size(); ++i) {
      const EncodedImage& x = (*r)[i];
      const std::string& path = a.files[s + slots[i]];
      const std::string hex = FormatHex(x.code.data(), e.bits());
      const int c = x.decode.class_index;
      const std::string cls = c >= 0 && static_cast<size_t>(c) < names.size() ? names[c] : std::to_string(c);
      ood += x.decode.out_of_distribution;
      ++done;
      if (a.json) {
        lines[slots[i]] = nlohmann::json({{"path", path},
                                          {"code", hex},
                                          {"class", cls},
                                          {"class_index", c},
                                          {"exact", x.decode.exact},
                                          {"distance", x.decode.distance},
                                          {"ood", x.decode.out_of_distribution},
                                          {"confidence", x.confidence},
                                          {"score", x.score}})
                              .dump();
      } else {
        char tail[96];
        std::snprintf(tail, sizeof(tail), "\t%s\t%u\t%s\t%.3f\t%.3f", x.decode.exact ? "exact" : "mhd",
                      x.decode.distance, x.decode.out_of_distribution ? "ood" : "-", x.confidence, x.score);
        lines[slots[i]] = path + "\t" + hex + "\t" + cls + tail;
      }
    }
    for (const std::string& l : lines) std::printf("%s\n", l.c_str());
  }
  std::fprintf(stderr, "encoded %zu files (%zu flagged OOD at radius %u), %zu errors\n", done, ood,
               e.ood_radius(), errors);
  return errors > 0 ? 2 : 0;
}

}  // namespace

void AddEncodeCommand(CLI::App* app, int* exit_code) {
  auto a = std::make_shared<EncodeArgs>();
  CLI::App* cmd = app->add_subcommand("encode", "Encode image files (JPEG/PNG) with a trained encoder");
  cmd->add_option("--model", a->model, "Encoder artifact (.hdbe)")->required();
  cmd->add_option("files", a->files, "Image files")->required();
  cmd->add_option("--batch", a->batch, "Images per forward pass")->capture_default_str();
  cmd->add_option("--threads", a->threads, "libtorch threads (0 = every logical CPU, unless OMP_NUM_THREADS is set)");
  cmd->add_flag("--json", a->json, "One JSON object per line");
  cmd->callback([a, exit_code] { *exit_code = RunEncode(*a); });
}

}  // namespace hamdb::tools
