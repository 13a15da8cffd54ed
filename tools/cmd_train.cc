// hamdb train: trains an LLC encoder (encoder/trainer.h) on Fashion-MNIST or
// on a folder of labelled images and writes the artifact; optionally the
// full-precision baseline beside it.
// hamdb evaluate-encoder: accuracy / OOD rate of an artifact on a labelled set.
#include <torch/torch.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "encoder/dataset.h"
#include "encoder/encoder.h"
#include "encoder/trainer.h"
#include "tools/cli_common.h"
#include "tools/commands.h"

namespace hamdb::tools {

namespace {

struct DataArgs {
  std::string dataset;      // "fashion-mnist" or "sklearn-digits"
  std::string dataset_dir;  // where the dataset files are
  std::string images;       // an image folder instead
  size_t limit = 0;
};

StatusOr<LabeledImages> LoadData(const DataArgs& d, const std::string& split) {
  if (!d.images.empty()) return LoadImageFolder(d.images);
  if (d.dataset == "fashion-mnist") {
    return LoadFashionMnist(d.dataset_dir.empty() ? kDefaultFashionMnistDir : d.dataset_dir, split, d.limit);
  }
  if (d.dataset == "sklearn-digits") {
    return LoadSklearnDigits(d.dataset_dir.empty() ? kDefaultSklearnDigitsPath : d.dataset_dir, 28, d.limit);
  }
  return Status::InvalidArgument("give --dataset fashion-mnist|sklearn-digits or --images DIR");
}

bool ParseSize(const std::string& s, int* w, int* h) {
  if (s.empty()) return true;
  return std::sscanf(s.c_str(), "%dx%d", w, h) == 2 && *w > 0 && *h > 0;
}

void PrintEvaluation(const char* what, const EncoderEvaluation& ev) {
  std::printf("%s: n=%zu  ED acc %.4f  MHD acc %.4f  class-code acc %.4f  mean bits correct %.4f  "
              "OOD rate %.4f  unique class codes %zu  encode %.0f img/s\n",
              what, ev.n, ev.ed_accuracy, ev.mhd_accuracy, ev.class_code_accuracy, ev.mean_bits_correct,
              ev.ood_rate, ev.unique_class_codes, ev.images_per_second);
}

nlohmann::json EvalJson(const EncoderEvaluation& ev) {
  return {{"n", ev.n},
          {"ed_accuracy", ev.ed_accuracy},
          {"mhd_accuracy", ev.mhd_accuracy},
          {"class_code_accuracy", ev.class_code_accuracy},
          {"mean_bits_correct", ev.mean_bits_correct},
          {"ood_rate", ev.ood_rate},
          {"unique_class_codes", ev.unique_class_codes},
          {"images_per_second", ev.images_per_second}};
}

struct TrainArgs {
  DataArgs data;
  std::string test_images;
  std::string out;
  std::string resize, crop;
  TrainConfig config;
  bool baseline = false;
  bool no_eval = false;
  std::string report_json;
};

int RunTrain(TrainArgs a) {
  std::setvbuf(stdout, nullptr, _IOLBF, 0);  // results interleave with stderr progress in logs
  TrainConfig& c = a.config;
  if (!ParseSize(a.resize, &c.preprocess.resize_width, &c.preprocess.resize_height)) {
    return Fail(Status::InvalidArgument("--resize wants WxH"));
  }
  if (!ParseSize(a.crop, &c.preprocess.crop_width, &c.preprocess.crop_height)) {
    return Fail(Status::InvalidArgument("--crop wants WxH"));
  }
  if (!c.torchscript_path.empty()) c.backbone = "torchscript";
  c.resume = c.resume && !c.checkpoint_path.empty();
  c.progress = [](const std::string& line) {
    std::fprintf(stderr, "%s\n", line.c_str());
    std::fflush(stderr);
  };
  if (c.threads > 0) at::set_num_threads(c.threads);

  auto train = LoadData(a.data, "train");
  if (!train.ok()) return Fail(train.status());
  StatusOr<LabeledImages> test = Status::NotFound("no evaluation set");
  if (!a.no_eval) {
    if (!a.test_images.empty()) {
      test = LoadImageFolder(a.test_images);
    } else if (a.data.images.empty()) {
      DataArgs td = a.data;
      td.limit = 0;
      test = LoadData(td, "test");
    }
    if (!test.ok() && (!a.test_images.empty() || a.data.images.empty())) return Fail(test.status());
  }
  std::fprintf(stderr, "training LLC, %d bits, on %zu images of %zu classes%s%s\n", c.bits, train->size(),
               train->class_names.size(), test.ok() ? ", evaluating on " : "",
               test.ok() ? (std::to_string(test->size()) + " images").c_str() : "");
  if (train->skipped > 0) std::fprintf(stderr, "skipped %zu undecodable training files\n", train->skipped);

  TrainReport rep;
  auto enc = TrainLlc(*train, test.ok() ? &*test : nullptr, c, &rep);
  if (!enc.ok()) return Fail(enc.status());
  Status st = (*enc)->Save(a.out);
  if (!st.ok()) return Fail(st);
  std::printf("wrote %s: llc, %d bits, %zu classes, %zu unique class codes, trained in %.1fs\n", a.out.c_str(),
              c.bits, rep.num_classes, rep.unique_class_codes, rep.seconds);
  nlohmann::json report = {{"bits", c.bits},
                           {"train_images", train->size()},
                           {"train_seconds", rep.seconds},
                           {"unique_class_codes", rep.unique_class_codes},
                           {"num_classes", rep.num_classes},
                           {"phase1_train_accuracy", rep.phase1_train_accuracy},
                           {"epoch_loss", rep.epoch_loss}};
  if (test.ok()) {
    auto ev = EvaluateEncoder(**enc, *test);
    if (!ev.ok()) return Fail(ev.status());
    if (rep.phase1_eval_accuracy >= 0) {
      std::printf("phase-1 class-code accuracy (test): %.4f\n", rep.phase1_eval_accuracy);
      report["phase1_test_accuracy"] = rep.phase1_eval_accuracy;
    }
    PrintEvaluation("test", *ev);
    report["test"] = EvalJson(*ev);
    if (a.baseline) {
      std::fprintf(stderr, "training the full-precision baseline (same backbone, linear softmax)\n");
      auto b = TrainBaseline(*train, *test, c);
      if (!b.ok()) return Fail(b.status());
      std::printf("baseline (full precision): test accuracy %.4f, trained in %.1fs\n", b->test_accuracy,
                  b->seconds);
      report["baseline_test_accuracy"] = b->test_accuracy;
      report["baseline_seconds"] = b->seconds;
    }
  } else if (a.baseline) {
    return Fail(Status::InvalidArgument("--baseline needs an evaluation set (--test-images)"));
  }
  if (!a.report_json.empty()) {
    std::ofstream(a.report_json) << report.dump(2) << "\n";
  }
  return 0;
}

struct EvalArgs {
  DataArgs data;
  std::string model;
  std::string split = "test";
  int64_t ood_radius = -1;
  size_t batch = 512;
  int threads = 0;
};

int RunEvaluate(const EvalArgs& a) {
  if (a.threads > 0) at::set_num_threads(a.threads);
  auto enc = Encoder::Load(a.model);
  if (!enc.ok()) return Fail(enc.status());
  auto data = LoadData(a.data, a.split);
  if (!data.ok()) return Fail(data.status());
  auto ev = EvaluateEncoder(**enc, *data, a.batch);
  if (!ev.ok()) return Fail(ev.status());
  PrintEvaluation(a.data.images.empty() ? (a.data.dataset + "/" + a.split).c_str() : a.data.images.c_str(), *ev);
  if (a.ood_radius >= 0) {
    // The OOD rate at another radius needs the codes again.
    size_t ood = 0;
    for (size_t s = 0; s < data->size(); s += a.batch) {
      std::vector<Image> b(data->images.begin() + s, data->images.begin() + std::min(data->size(), s + a.batch));
      auto r = (*enc)->Encode(b);
      if (!r.ok()) return Fail(r.status());
      for (const auto& e : *r) ood += e.decode.distance > static_cast<uint32_t>(a.ood_radius);
    }
    std::printf("OOD rate at radius %lld: %.4f (%zu of %zu)\n", static_cast<long long>(a.ood_radius),
                static_cast<double>(ood) / data->size(), ood, data->size());
  }
  return 0;
}

void AddDataOptions(CLI::App* cmd, DataArgs* d) {
  cmd->add_option("--dataset", d->dataset, "Built-in dataset: fashion-mnist (or sklearn-digits, OOD checks)");
  cmd->add_option("--dataset-dir", d->dataset_dir, "Dataset location (default: the Debian package's)");
  cmd->add_option("--images", d->images, "Folder of labelled images: DIR/<class>/<file>.png|jpg");
  cmd->add_option("--limit", d->limit, "Use only the first N dataset images (0 = all)");
}

}  // namespace

void AddTrainCommands(CLI::App* app, int* exit_code) {
  auto a = std::make_shared<TrainArgs>();
  TrainConfig& c = a->config;
  c.threads = 2;
  CLI::App* cmd = app->add_subcommand("train", "Train an LLC encoder (writes one .hdbe artifact)");
  AddDataOptions(cmd, &a->data);
  cmd->add_option("--test-images", a->test_images, "Evaluation image folder (for --images training)");
  cmd->add_option("--out", a->out, "Artifact path")->required();
  cmd->add_option("--bits", c.bits, "Code length")->capture_default_str();
  cmd->add_option("--epochs1", c.phase1_epochs, "Phase-1 (codebook) epochs")->capture_default_str();
  cmd->add_option("--epochs2", c.phase2_epochs, "Phase-2 (instance code) epochs")->capture_default_str();
  cmd->add_option("--batch-size", c.batch_size, "Mini-batch size")->capture_default_str();
  cmd->add_option("--lr", c.lr, "Adam learning rate (cosine decay per phase)")->capture_default_str();
  cmd->add_option("--codebook-lr", c.codebook_lr, "Learning rate of the latent codebook")->capture_default_str();
  cmd->add_option("--weight-decay", c.weight_decay, "Adam weight decay")->capture_default_str();
  cmd->add_option("--label-smoothing", c.label_smoothing, "Phase-1 label smoothing")->capture_default_str();
  cmd->add_option("--width", c.cnn_width, "Built-in CNN width (first conv channels)")->capture_default_str();
  cmd->add_option("--feature-dim", c.feature_dim, "Built-in CNN feature size d")->capture_default_str();
  cmd->add_option("--torchscript", c.torchscript_path,
                  "TorchScript backbone (N x C x H x W float -> N x d) instead of the built-in CNN");
  cmd->add_option("--channels", c.preprocess.channels, "Network input channels (1 gray, 3 RGB)")
      ->capture_default_str();
  cmd->add_option("--resize", a->resize, "Resize inputs to WxH (default 28x28)");
  cmd->add_option("--crop", a->crop, "Then centre-crop to WxH");
  cmd->add_option("--ood-radius", c.ood_radius, "Default OOD radius stored in the artifact")->capture_default_str();
  cmd->add_option("--snap-margin", c.snap_margin,
                  "Bits with |logit| below this take the decoded class code's bit (0 = raw codes)")
      ->check(CLI::NonNegativeNumber)
      ->capture_default_str();
  cmd->add_option("--seed", c.seed, "Random seed")->capture_default_str();
  cmd->add_option("--threads", c.threads, "libtorch threads (0 = libtorch default)")->capture_default_str();
  cmd->add_option("--checkpoint", c.checkpoint_path, "Checkpoint file written after every epoch");
  cmd->add_flag("--resume", c.resume, "Resume from --checkpoint when it exists");
  cmd->add_option("--stop-after", c.stop_after_epochs, "Stop after this many epochs (resume later)");
  cmd->add_flag("--baseline", a->baseline, "Also train the full-precision baseline and report its accuracy");
  cmd->add_flag("--no-eval", a->no_eval, "Skip the test-set evaluation");
  cmd->add_option("--report-json", a->report_json, "Write the figures as JSON here");
  cmd->callback([a, exit_code] { *exit_code = RunTrain(*a); });

  auto e = std::make_shared<EvalArgs>();
  CLI::App* ev = app->add_subcommand("evaluate-encoder", "Accuracy and OOD rate of an encoder on a labelled set");
  ev->add_option("--model", e->model, "Encoder artifact")->required();
  AddDataOptions(ev, &e->data);
  ev->add_option("--split", e->split, "Dataset split: train|test")->capture_default_str();
  ev->add_option("--ood-radius", e->ood_radius, "Also report the OOD rate at this radius");
  ev->add_option("--batch", e->batch, "Encode batch size")->capture_default_str();
  ev->add_option("--threads", e->threads, "libtorch threads (0 = default)");
  ev->callback([e, exit_code] { *exit_code = RunEvaluate(*e); });
}

}  // namespace hamdb::tools
