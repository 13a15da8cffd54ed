// hamdb export-dataset: writes a built-in dataset as PNG files in class
// folders (DIR/<split>/<class-name>/<index>.png), the layout `hamdb train
// --images` and `hamdb ingest` read. Torch-free.
#include <cstdio>
#include <filesystem>

#include "encoder/dataset.h"
#include "tools/cli_common.h"
#include "tools/commands.h"

namespace hamdb::tools {

namespace {

struct ExportArgs {
  std::string dataset;
  std::string out;
  std::string split = "both";
  std::string dataset_dir;
  size_t limit = 0;
};

Status ExportSplit(const LabeledImages& data, const std::string& dir) {
  namespace fs = std::filesystem;
  for (const auto& name : data.class_names) {
    std::error_code ec;
    fs::create_directories(fs::path(dir) / name, ec);
    if (ec) return Status::IOError(dir + "/" + name + ": " + ec.message());
  }
  for (size_t i = 0; i < data.size(); ++i) {
    char file[32];
    std::snprintf(file, sizeof(file), "%05zu.png", i);
    const std::string path = (fs::path(dir) / data.class_names[data.labels[i]] / file).string();
    HAMDB_RETURN_IF_ERROR(WritePngFile(data.images[i], path));
  }
  return Status::OK();
}

int RunExport(const ExportArgs& a) {
  std::vector<std::string> splits;
  if (a.split == "both") {
    splits = {"train", "test"};
  } else if (a.split == "train" || a.split == "test") {
    splits = {a.split};
  } else {
    return Fail(Status::InvalidArgument("--split must be train, test or both"));
  }
  for (const std::string& split : splits) {
    StatusOr<LabeledImages> data = Status::InvalidArgument("unknown dataset '" + a.dataset +
                                                           "' (fashion-mnist or sklearn-digits)");
    if (a.dataset == "fashion-mnist") {
      data = LoadFashionMnist(a.dataset_dir.empty() ? kDefaultFashionMnistDir : a.dataset_dir, split, a.limit);
    } else if (a.dataset == "sklearn-digits") {
      if (split == "train" && splits.size() == 2) continue;  // one set only: written as "test"
      data = LoadSklearnDigits(a.dataset_dir.empty() ? kDefaultSklearnDigitsPath : a.dataset_dir, 28, a.limit);
    }
    if (!data.ok()) return Fail(data.status());
    const std::string dir = a.out + "/" + split;
    Status st = ExportSplit(*data, dir);
    if (!st.ok()) return Fail(st);
    std::printf("wrote %zu PNG files in %zu class folders under %s\n", data->size(), data->class_names.size(),
                dir.c_str());
  }
  return 0;
}

}  // namespace

void AddExportCommand(CLI::App* app, int* exit_code) {
  auto a = std::make_shared<ExportArgs>();
  CLI::App* cmd = app->add_subcommand("export-dataset", "Write a built-in dataset as PNG files in class folders");
  cmd->add_option("dataset", a->dataset, "fashion-mnist, or sklearn-digits (8x8 digits upscaled to 28x28)")
      ->required();
  cmd->add_option("--out", a->out, "Output directory (DIR/<split>/<class>/<index>.png)")->required();
  cmd->add_option("--split", a->split, "train, test or both")->capture_default_str();
  cmd->add_option("--limit", a->limit, "First N images per split (0 = all)")->capture_default_str();
  cmd->add_option("--dataset-dir", a->dataset_dir, "Dataset location (default: the Debian package's)");
  cmd->callback([a, exit_code] { *exit_code = RunExport(*a); });
}

}  // namespace hamdb::tools
