#include "encoder/trainer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <numeric>
#include <random>
#include <set>
#include <sstream>

#include "encoder/llc_model.h"

namespace hamdb {

std::vector<int64_t> EpochOrder(size_t n, uint64_t seed, int epoch) {
  std::vector<int64_t> idx(n);
  std::iota(idx.begin(), idx.end(), 0);
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(epoch) + 1);
  std::shuffle(idx.begin(), idx.end(), rng);
  return idx;
}

double CosineLr(double base, int64_t step, int64_t total) {
  if (total <= 1) return base;
  return base * 0.5 * (1.0 + std::cos(M_PI * static_cast<double>(step) / static_cast<double>(total)));
}

void SetInputStatistics(const torch::Tensor& x_u8, PreprocessConfig* pre) {
  pre->mean.clear();
  pre->stddev.clear();
  const torch::Tensor f = x_u8.to(torch::kFloat64).div(255.0).transpose(0, 1).reshape({pre->channels, -1});
  const torch::Tensor m = f.mean(1), sd = f.std(1);
  for (int k = 0; k < pre->channels; ++k) {
    pre->mean.push_back(static_cast<float>(m[k].item<double>()));
    pre->stddev.push_back(std::max(1e-3f, static_cast<float>(sd[k].item<double>())));
  }
}

namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

std::string Fmt(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
std::string Fmt(const char* fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  std::vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  return buf;
}

Status ValidateConfig(const TrainConfig& c, const LabeledImages& train) {
  if (c.bits < 1 || c.bits > 4096) return Status::InvalidArgument("bits must be in [1, 4096]");
  if (c.batch_size < 1) return Status::InvalidArgument("batch size must be >= 1");
  if (c.phase1_epochs < 1 || c.phase2_epochs < 0) return Status::InvalidArgument("need >= 1 phase-1 epoch");
  if (c.cnn_width < 1 || c.feature_dim < 1) return Status::InvalidArgument("bad backbone size");
  HAMDB_RETURN_IF_ERROR(ValidateSnapMargin(c.snap_margin));
  if (train.size() == 0) return Status::InvalidArgument("empty training set");
  if (train.class_names.size() < 2) return Status::InvalidArgument("need at least 2 classes");
  if (train.labels.size() != train.size()) return Status::InvalidArgument("labels do not match images");
  if (c.backbone != "cnn" && c.backbone != "torchscript") {
    return Status::InvalidArgument("backbone must be cnn or torchscript");
  }
  if (c.backbone == "torchscript" && c.torchscript_path.empty()) {
    return Status::InvalidArgument("torchscript backbone needs a module path");
  }
  return Status::OK();
}

// Prepared training state shared by LLC and the baseline.
struct Prepared {
  PreprocessConfig pre;
  torch::Tensor x;       // N x C x H x W uint8
  torch::Tensor y;       // N int64
  LlcNet net{nullptr};
};

StatusOr<Prepared> Prepare(const LabeledImages& train, const TrainConfig& c) {
  HAMDB_RETURN_IF_ERROR(ValidateConfig(c, train));
  if (c.threads > 0) at::set_num_threads(c.threads);
  torch::manual_seed(c.seed);
  Prepared p;
  p.pre = c.preprocess;
  p.pre.mean.clear();
  p.pre.stddev.clear();
  HAMDB_ASSIGN_OR_RETURN(p.x, ImagesToTensor(train.images, p.pre));
  if (!c.preprocess.mean.empty()) {
    p.pre.mean = c.preprocess.mean;
    p.pre.stddev = c.preprocess.stddev;
    if (p.pre.mean.size() != static_cast<size_t>(p.pre.channels) || p.pre.stddev.size() != p.pre.mean.size()) {
      return Status::InvalidArgument("mean/stddev need one value per channel");
    }
  } else {
    SetInputStatistics(p.x, &p.pre);  // per-channel statistics of the training pixels
  }
  p.y = torch::tensor(std::vector<int64_t>(train.labels.begin(), train.labels.end()), torch::kInt64);
  std::shared_ptr<torch::jit::Module> script;
  BackboneSpec spec;
  spec.type = c.backbone;
  spec.cnn_width = c.cnn_width;
  spec.feature_dim = c.feature_dim;
  try {
    if (c.backbone == "torchscript") {
      script = std::make_shared<torch::jit::Module>(torch::jit::load(c.torchscript_path));
    }
    torch::manual_seed(c.seed);
    p.net = LlcNet(spec, p.pre, c.bits, static_cast<int>(train.class_names.size()), script);
  } catch (const std::exception& e) {
    return Status::InvalidArgument(std::string("building the backbone: ") + e.what());
  }
  return p;
}

void SetLrs(torch::optim::Adam& opt, const std::vector<double>& bases, int64_t step, int64_t total) {
  auto& groups = opt.param_groups();
  for (size_t g = 0; g < groups.size() && g < bases.size(); ++g) {
    static_cast<torch::optim::AdamOptions&>(groups[g].options()).lr(CosineLr(bases[g], step, total));
  }
}

// Makes the latent codebook's sign patterns distinct when 2^bits allows it:
// a random start with two equal class codes would begin collapsed.
void InitCodebook(LlcNet& net, uint64_t seed) {
  torch::NoGradGuard ng;
  const int64_t L = net->latent_codebook.size(0), k = net->latent_codebook.size(1);
  for (int attempt = 0; attempt < 1000; ++attempt) {
    torch::manual_seed(seed + 7919 * attempt);
    net->latent_codebook.copy_(torch::randn({L, k}) * 0.1);
    if (k < 63 && (int64_t{1} << k) < L) return;
    std::set<std::vector<bool>> seen;
    auto acc = net->latent_codebook.accessor<float, 2>();
    for (int64_t c = 0; c < L; ++c) {
      std::vector<bool> s(k);
      for (int64_t j = 0; j < k; ++j) s[j] = acc[c][j] >= 0;
      seen.insert(s);
    }
    if (static_cast<int64_t>(seen.size()) == L) return;
  }
}

std::vector<uint8_t> ClassCodes(LlcNet& net) {
  torch::NoGradGuard ng;
  return PackBits(net->latent_codebook >= 0);
}

// ---------------------------------------------------------------- checkpoint

Status SaveCheckpoint(const std::string& path, LlcNet& net, torch::optim::Adam* opt, int done,
                      const TrainConfig& c) {
  try {
    torch::serialize::OutputArchive ar;
    ar.write("done", torch::tensor(static_cast<int64_t>(done)));
    ar.write("bits", torch::tensor(static_cast<int64_t>(c.bits)));
    for (const auto& p : net->named_parameters(true)) ar.write("net." + p.key(), p.value());
    for (const auto& b : net->named_buffers(true)) ar.write("net." + b.key(), b.value(), true);
    if (net->script) {
      int i = 0;
      for (const auto& p : net->script->parameters()) ar.write("script.p" + std::to_string(i++), p);
      i = 0;
      for (const auto& b : net->script->buffers()) ar.write("script.b" + std::to_string(i++), b, true);
    }
    if (opt != nullptr) {
      torch::serialize::OutputArchive sub;
      opt->save(sub);
      ar.write("optimizer", sub);
    }
    const std::string tmp = path + ".tmp";
    ar.save_to(tmp);
    std::error_code ec;
    std::filesystem::rename(tmp, path, ec);
    if (ec) return Status::IOError(path + ": " + ec.message());
  } catch (const std::exception& e) {
    return Status::IOError(std::string("writing checkpoint: ") + e.what());
  }
  return Status::OK();
}

// Returns the number of finished epochs restored (0 when there is no file).
StatusOr<int> LoadCheckpoint(const std::string& path, LlcNet& net, const TrainConfig& c,
                             torch::optim::Adam* opt1) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return 0;
  try {
    torch::serialize::InputArchive ar;
    ar.load_from(path);
    torch::Tensor t;
    ar.read("bits", t);
    if (t.item<int64_t>() != c.bits) return Status::InvalidArgument(path + ": checkpoint has other bits");
    ar.read("done", t);
    const int done = static_cast<int>(t.item<int64_t>());
    torch::NoGradGuard ng;
    for (auto& p : net->named_parameters(true)) {
      torch::Tensor v;
      ar.read("net." + p.key(), v);
      if (v.sizes() != p.value().sizes()) return Status::InvalidArgument(path + ": checkpoint shape mismatch");
      p.value().copy_(v);
    }
    for (auto& b : net->named_buffers(true)) {
      torch::Tensor v;
      ar.read("net." + b.key(), v, true);
      b.value().copy_(v);
    }
    if (net->script) {
      int i = 0;
      for (auto p : net->script->parameters()) {
        torch::Tensor v;
        ar.read("script.p" + std::to_string(i++), v);
        p.copy_(v);
      }
      i = 0;
      for (auto b : net->script->buffers()) {
        torch::Tensor v;
        ar.read("script.b" + std::to_string(i++), v, true);
        b.copy_(v);
      }
    }
    // Only a mid-phase-1 checkpoint carries live optimizer state; phase 2
    // state is restored by the caller.
    if (opt1 != nullptr && done < c.phase1_epochs) {
      torch::serialize::InputArchive sub;
      ar.read("optimizer", sub);
      opt1->load(sub);
    }
    return done;
  } catch (const std::exception& e) {
    return Status::Corruption(path + ": unreadable checkpoint: " + e.what());
  }
}

Status LoadOptimizer(const std::string& path, torch::optim::Adam* opt) {
  try {
    torch::serialize::InputArchive ar;
    ar.load_from(path);
    torch::serialize::InputArchive sub;
    ar.read("optimizer", sub);
    opt->load(sub);
  } catch (const std::exception& e) {
    return Status::Corruption(path + ": " + e.what());
  }
  return Status::OK();
}

// Accuracy of argmax(sign(C) z) on a set, in eval mode.
double ClassCodeAccuracy(LlcNet& net, const torch::Tensor& x_u8, const torch::Tensor& y,
                         const PreprocessConfig& pre) {
  torch::NoGradGuard ng;
  net->SetTraining(false);
  const torch::Tensor sc = torch::where(net->latent_codebook >= 0, 1.0f, -1.0f);
  int64_t correct = 0;
  for (int64_t s = 0; s < x_u8.size(0); s += 1024) {
    const int64_t e = std::min(x_u8.size(0), s + 1024);
    const torch::Tensor z = net->BitLogits(net->Features(Normalize(x_u8.slice(0, s, e), pre)));
    correct += z.matmul(sc.t()).argmax(1).eq(y.slice(0, s, e)).sum().item<int64_t>();
  }
  return static_cast<double>(correct) / std::max<int64_t>(1, x_u8.size(0));
}

Status StoppedEarly(int done, const TrainConfig& c) {
  return Status::FailedPrecondition(Fmt("stopped after %d epochs as asked%s", done,
                                        c.checkpoint_path.empty() ? " (no checkpoint)"
                                                                  : "; resume from the checkpoint"));
}

}  // namespace

StatusOr<std::unique_ptr<Encoder>> TrainLlc(const LabeledImages& train, const LabeledImages* eval,
                                            const TrainConfig& c, TrainReport* report) {
  TrainReport local;
  TrainReport& rep = report ? *report : local;
  rep = TrainReport{};
  const auto t0 = Clock::now();
  try {
    HAMDB_ASSIGN_OR_RETURN(Prepared p, Prepare(train, c));
    LlcNet net = p.net;
    InitCodebook(net, c.seed);
    const int64_t n = p.x.size(0);
    const int64_t steps_per_epoch = (n + c.batch_size - 1) / c.batch_size;
    const int total_epochs = c.phase1_epochs + c.phase2_epochs;
    const int L = static_cast<int>(train.class_names.size());
    rep.num_classes = L;

    std::vector<torch::optim::OptimizerParamGroup> groups1;
    groups1.emplace_back(net->AllParameters(false, false),
                         std::make_unique<torch::optim::AdamOptions>(torch::optim::AdamOptions(c.lr).weight_decay(c.weight_decay)));
    groups1.emplace_back(std::vector<torch::Tensor>{net->latent_codebook},
                         std::make_unique<torch::optim::AdamOptions>(c.codebook_lr));
    torch::optim::Adam opt1(std::move(groups1), torch::optim::AdamOptions(c.lr));
    const std::vector<double> bases1 = {c.lr, c.codebook_lr};

    int done = 0;
    if (c.resume && !c.checkpoint_path.empty()) {
      HAMDB_ASSIGN_OR_RETURN(done, LoadCheckpoint(c.checkpoint_path, net, c, &opt1));
      rep.resumed_epochs = done;
      if (done > 0 && c.progress) {
        c.progress(Fmt("resumed from %s after %d of %d epochs", c.checkpoint_path.c_str(), done, total_epochs));
      }
    }
    const int64_t run_steps_total = static_cast<int64_t>(total_epochs - done) * steps_per_epoch;
    int64_t run_steps = 0;
    const auto run_t0 = Clock::now();
    auto eta = [&]() {
      return run_steps == 0 ? 0.0 : Since(run_t0) / run_steps * (run_steps_total - run_steps);
    };

    // ---- phase 1: codebook learning.
    const auto ce_opts = torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(c.label_smoothing);
    for (int epoch = done; epoch < c.phase1_epochs; ++epoch) {
      net->SetTraining(true);
      const std::vector<int64_t> order = EpochOrder(n, c.seed, epoch);
      double loss_sum = 0;
      int64_t correct = 0, seen = 0;
      for (int64_t s = 0; s < steps_per_epoch; ++s) {
        SetLrs(opt1, bases1, epoch * steps_per_epoch + s, c.phase1_epochs * steps_per_epoch);
        const int64_t b0 = s * c.batch_size, b1 = std::min(n, b0 + c.batch_size);
        const torch::Tensor idx = torch::from_blob(const_cast<int64_t*>(order.data()) + b0, {b1 - b0}, torch::kInt64);
        const torch::Tensor xb = Normalize(p.x.index_select(0, idx), p.pre);
        const torch::Tensor yb = p.y.index_select(0, idx);
        opt1.zero_grad();
        const torch::Tensor z = net->BitLogits(net->Features(xb));
        const torch::Tensor logits = z.matmul(net->SignedCodebook().t());
        const torch::Tensor loss = torch::nn::functional::cross_entropy(logits, yb, ce_opts);
        loss.backward();
        opt1.step();
        loss_sum += loss.item<double>() * (b1 - b0);
        correct += logits.argmax(1).eq(yb).sum().item<int64_t>();
        seen += b1 - b0;
        ++run_steps;
        if (c.progress && c.progress_every > 0 && (s + 1) % c.progress_every == 0 && s + 1 < steps_per_epoch) {
          c.progress(Fmt("phase 1 epoch %d/%d step %lld/%lld loss %.4f acc %.4f elapsed %.0fs eta %.0fs", epoch + 1,
                         c.phase1_epochs, static_cast<long long>(s + 1), static_cast<long long>(steps_per_epoch),
                         loss_sum / seen, static_cast<double>(correct) / seen, Since(t0), eta()));
        }
      }
      rep.epoch_loss.push_back(loss_sum / seen);
      rep.phase1_train_accuracy = static_cast<double>(correct) / seen;
      std::vector<uint8_t> codes = ClassCodes(net);
      HAMDB_ASSIGN_OR_RETURN(Codebook cb, Codebook::Create(c.bits, codes));
      if (c.progress) {
        c.progress(Fmt("phase 1 epoch %d/%d done: loss %.4f acc %.4f unique class codes %zu/%d elapsed %.0fs eta %.0fs",
                       epoch + 1, c.phase1_epochs, loss_sum / seen, rep.phase1_train_accuracy,
                       cb.NumUniqueCodes(), L, Since(t0), eta()));
      }
      done = epoch + 1;
      if (!c.checkpoint_path.empty()) HAMDB_RETURN_IF_ERROR(SaveCheckpoint(c.checkpoint_path, net, &opt1, done, c));
      if (c.stop_after_epochs > 0 && done >= c.stop_after_epochs && done < total_epochs) {
        return StoppedEarly(done, c);
      }
    }

    // Class codes are fixed from here on.
    const std::vector<uint8_t> class_codes = ClassCodes(net);
    HAMDB_ASSIGN_OR_RETURN(Codebook codebook, Codebook::Create(c.bits, class_codes, train.class_names));
    rep.unique_class_codes = codebook.NumUniqueCodes();
    if (rep.unique_class_codes < static_cast<size_t>(L)) {
      return Status::FailedPrecondition(Fmt("LLC codebook collapsed: %zu unique class codes for %d classes at %d bits "
                                            "(try more bits, more phase-1 epochs or another seed)",
                                            rep.unique_class_codes, L, c.bits));
    }
    torch::Tensor eval_x, eval_y;
    if (eval != nullptr && eval->size() > 0) {
      HAMDB_ASSIGN_OR_RETURN(eval_x, ImagesToTensor(eval->images, p.pre));
      eval_y = torch::tensor(std::vector<int64_t>(eval->labels.begin(), eval->labels.end()), torch::kInt64);
      if (done == c.phase1_epochs) {
        rep.phase1_eval_accuracy = ClassCodeAccuracy(net, eval_x, eval_y, p.pre);
        if (c.progress) c.progress(Fmt("phase 1 class-code accuracy on the eval set: %.4f", rep.phase1_eval_accuracy));
      }
    }

    // ---- phase 2: instance codes against the frozen class codes.
    net->latent_codebook.set_requires_grad(false);
    const torch::Tensor targets = (net->latent_codebook >= 0).to(torch::kFloat32).detach();  // L x k, (C_y + 1) / 2
    std::vector<torch::optim::OptimizerParamGroup> groups2;
    groups2.emplace_back(net->AllParameters(false, false),
                         std::make_unique<torch::optim::AdamOptions>(torch::optim::AdamOptions(c.lr).weight_decay(c.weight_decay)));
    torch::optim::Adam opt2(std::move(groups2), torch::optim::AdamOptions(c.lr));
    if (done > c.phase1_epochs) HAMDB_RETURN_IF_ERROR(LoadOptimizer(c.checkpoint_path, &opt2));
    for (int epoch = std::max(done, c.phase1_epochs); epoch < total_epochs; ++epoch) {
      const int e2 = epoch - c.phase1_epochs;
      net->SetTraining(true);
      const std::vector<int64_t> order = EpochOrder(n, c.seed, epoch);
      double loss_sum = 0;
      int64_t bits_ok = 0, seen = 0;
      for (int64_t s = 0; s < steps_per_epoch; ++s) {
        SetLrs(opt2, {c.lr}, e2 * steps_per_epoch + s, c.phase2_epochs * steps_per_epoch);
        const int64_t b0 = s * c.batch_size, b1 = std::min(n, b0 + c.batch_size);
        const torch::Tensor idx = torch::from_blob(const_cast<int64_t*>(order.data()) + b0, {b1 - b0}, torch::kInt64);
        const torch::Tensor xb = Normalize(p.x.index_select(0, idx), p.pre);
        const torch::Tensor tb = targets.index_select(0, p.y.index_select(0, idx));
        opt2.zero_grad();
        const torch::Tensor z = net->BitLogits(net->Features(xb));
        const torch::Tensor loss = torch::nn::functional::binary_cross_entropy_with_logits(z, tb);
        loss.backward();
        opt2.step();
        loss_sum += loss.item<double>() * (b1 - b0);
        bits_ok += (z > 0).eq(tb > 0.5).sum().item<int64_t>();
        seen += b1 - b0;
        ++run_steps;
        if (c.progress && c.progress_every > 0 && (s + 1) % c.progress_every == 0 && s + 1 < steps_per_epoch) {
          c.progress(Fmt("phase 2 epoch %d/%d step %lld/%lld loss %.4f bit acc %.4f elapsed %.0fs eta %.0fs", e2 + 1,
                         c.phase2_epochs, static_cast<long long>(s + 1), static_cast<long long>(steps_per_epoch),
                         loss_sum / seen, static_cast<double>(bits_ok) / (seen * c.bits), Since(t0), eta()));
        }
      }
      rep.epoch_loss.push_back(loss_sum / seen);
      if (c.progress) {
        c.progress(Fmt("phase 2 epoch %d/%d done: loss %.4f bit acc %.4f elapsed %.0fs eta %.0fs", e2 + 1,
                       c.phase2_epochs, loss_sum / seen, static_cast<double>(bits_ok) / (seen * c.bits), Since(t0),
                       eta()));
      }
      done = epoch + 1;
      if (!c.checkpoint_path.empty()) HAMDB_RETURN_IF_ERROR(SaveCheckpoint(c.checkpoint_path, net, &opt2, done, c));
      if (c.stop_after_epochs > 0 && done >= c.stop_after_epochs && done < total_epochs) {
        return StoppedEarly(done, c);
      }
    }
    net->SetTraining(false);
    rep.seconds = Since(t0);

    EncoderMeta meta;
    meta.method = "llc";
    meta.bits = c.bits;
    meta.backbone = net->spec;
    meta.preprocess = p.pre;
    meta.class_names = train.class_names;
    meta.class_codes = class_codes;
    meta.ood_radius = c.ood_radius;
    meta.snap_margin = static_cast<float>(c.snap_margin);
    nlohmann::json tj = {{"train_images", n},
                         {"phase1_epochs", c.phase1_epochs},
                         {"phase2_epochs", c.phase2_epochs},
                         {"batch_size", c.batch_size},
                         {"lr", c.lr},
                         {"label_smoothing", c.label_smoothing},
                         {"seed", c.seed},
                         {"seconds", rep.seconds},
                         {"epoch_loss", rep.epoch_loss},
                         {"phase1_train_accuracy", rep.phase1_train_accuracy}};
    if (rep.phase1_eval_accuracy >= 0) tj["phase1_eval_accuracy"] = rep.phase1_eval_accuracy;
    meta.training_json = tj.dump();
    HAMDB_ASSIGN_OR_RETURN(std::unique_ptr<TorchEncoder> enc, TorchEncoder::Create(std::move(meta), net));
    return std::unique_ptr<Encoder>(std::move(enc));
  } catch (const std::exception& e) {
    return Status::Internal(std::string("training failed: ") + e.what());
  }
}

StatusOr<BaselineReport> TrainBaseline(const LabeledImages& train, const LabeledImages& test,
                                       const TrainConfig& c) {
  const auto t0 = Clock::now();
  try {
    HAMDB_ASSIGN_OR_RETURN(Prepared p, Prepare(train, c));
    LlcNet net = p.net;
    std::vector<torch::Tensor> params = net->AllParameters(false, true);
    // The projection P plays no part in the baseline.
    params.erase(std::remove_if(params.begin(), params.end(),
                                [&](const torch::Tensor& t) {
                                  return t.is_same(net->proj->weight) || t.is_same(net->proj->bias);
                                }),
                 params.end());
    torch::optim::Adam opt(params, torch::optim::AdamOptions(c.lr).weight_decay(c.weight_decay));
    const int64_t n = p.x.size(0);
    const int64_t steps = (n + c.batch_size - 1) / c.batch_size;
    const int epochs = c.phase1_epochs + c.phase2_epochs;
    const auto ce_opts = torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(c.label_smoothing);
    for (int epoch = 0; epoch < epochs; ++epoch) {
      net->SetTraining(true);
      const std::vector<int64_t> order = EpochOrder(n, c.seed, epoch);
      double loss_sum = 0;
      int64_t correct = 0;
      for (int64_t s = 0; s < steps; ++s) {
        SetLrs(opt, {c.lr}, epoch * steps + s, epochs * steps);
        const int64_t b0 = s * c.batch_size, b1 = std::min(n, b0 + c.batch_size);
        const torch::Tensor idx = torch::from_blob(const_cast<int64_t*>(order.data()) + b0, {b1 - b0}, torch::kInt64);
        const torch::Tensor yb = p.y.index_select(0, idx);
        opt.zero_grad();
        const torch::Tensor logits = net->head->forward(net->Features(Normalize(p.x.index_select(0, idx), p.pre)));
        const torch::Tensor loss = torch::nn::functional::cross_entropy(logits, yb, ce_opts);
        loss.backward();
        opt.step();
        loss_sum += loss.item<double>() * (b1 - b0);
        correct += logits.argmax(1).eq(yb).sum().item<int64_t>();
      }
      if (c.progress) {
        c.progress(Fmt("baseline epoch %d/%d done: loss %.4f acc %.4f elapsed %.0fs", epoch + 1, epochs, loss_sum / n,
                       static_cast<double>(correct) / n, Since(t0)));
      }
    }
    net->SetTraining(false);
    HAMDB_ASSIGN_OR_RETURN(torch::Tensor tx, ImagesToTensor(test.images, p.pre));
    const torch::Tensor ty = torch::tensor(std::vector<int64_t>(test.labels.begin(), test.labels.end()), torch::kInt64);
    torch::NoGradGuard ng;
    int64_t correct = 0;
    for (int64_t s = 0; s < tx.size(0); s += 1024) {
      const int64_t e = std::min(tx.size(0), s + 1024);
      correct += net->head->forward(net->Features(Normalize(tx.slice(0, s, e), p.pre)))
                     .argmax(1)
                     .eq(ty.slice(0, s, e))
                     .sum()
                     .item<int64_t>();
    }
    BaselineReport r;
    r.test_accuracy = static_cast<double>(correct) / std::max<int64_t>(1, tx.size(0));
    r.seconds = Since(t0);
    return r;
  } catch (const std::exception& e) {
    return Status::Internal(std::string("baseline training failed: ") + e.what());
  }
}

StatusOr<EncoderEvaluation> EvaluateEncoder(const Encoder& encoder, const LabeledImages& test, size_t batch_size) {
  if (test.size() == 0) return Status::InvalidArgument("empty evaluation set");
  if (batch_size == 0) batch_size = 512;
  const Codebook& cb = encoder.codebook();
  const int k = encoder.bits();
  const size_t L = cb.num_classes();
  EncoderEvaluation ev;
  ev.n = test.size();
  ev.unique_class_codes = cb.NumUniqueCodes();
  size_t ed = 0, mhd = 0, cc = 0, ood = 0;
  double bits_ok = 0;
  double encode_seconds = 0;
  for (size_t s = 0; s < test.size(); s += batch_size) {
    const size_t e = std::min(test.size(), s + batch_size);
    std::vector<Image> batch(test.images.begin() + s, test.images.begin() + e);
    const auto t0 = Clock::now();
    HAMDB_ASSIGN_OR_RETURN(std::vector<EncodedImage> enc, encoder.Encode(batch));
    encode_seconds += Since(t0);
    for (size_t i = 0; i < enc.size(); ++i) {
      const int y = test.labels[s + i];
      if (y < 0 || static_cast<size_t>(y) >= L) return Status::InvalidArgument("label outside the codebook");
      const EncodedImage& r = enc[i];
      const uint8_t* true_code = cb.class_code(y);
      if (std::equal(r.code.begin(), r.code.end(), true_code)) ++ed;
      if (r.decode.class_index == y) ++mhd;
      if (r.decode.out_of_distribution) ++ood;
      // Phase-1 classifier argmax_c sign(C_c) . z, with z recovered from the
      // probabilities (clamped: sigmoid saturates in float).
      int best = -1;
      double best_score = -1e300;
      for (size_t c = 0; c < L; ++c) {
        const uint8_t* code = cb.class_code(c);
        double score = 0;
        for (int j = 0; j < k; ++j) {
          const double pj = std::min(1.0 - 1e-7, std::max(1e-7, static_cast<double>(r.bit_probs[j])));
          const double z = std::log(pj / (1 - pj));
          score += ((code[j / 8] >> (j % 8)) & 1) ? z : -z;
        }
        if (score > best_score) {
          best_score = score;
          best = static_cast<int>(c);
        }
      }
      if (best == y) ++cc;
      int agree = 0;
      for (int j = 0; j < k; ++j) {
        agree += ((r.code[j / 8] >> (j % 8)) & 1) == ((true_code[j / 8] >> (j % 8)) & 1);
      }
      bits_ok += static_cast<double>(agree) / k;
    }
  }
  const double n = static_cast<double>(ev.n);
  ev.ed_accuracy = ed / n;
  ev.mhd_accuracy = mhd / n;
  ev.class_code_accuracy = cc / n;
  ev.mean_bits_correct = bits_ok / n;
  ev.ood_rate = ood / n;
  ev.images_per_second = encode_seconds > 0 ? n / encode_seconds : 0;
  return ev;
}

}  // namespace hamdb
