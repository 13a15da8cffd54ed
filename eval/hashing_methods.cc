#include "eval/hashing_methods.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>
#include <numeric>
#include <random>

#include "encoder/llc_model.h"
#include "core/binary_code.h"

namespace hamdb {
namespace {

using Clock = std::chrono::steady_clock;

double Since(Clock::time_point t0) { return std::chrono::duration<double>(Clock::now() - t0).count(); }

// EpochOrder, CosineLr and SetInputStatistics (encoder/llc_model.h) are
// LLC's own, so every method sees the same batches, schedule and inputs.

Status ValidateConfig(const TrainConfig& c, const LabeledImages& train) {
  if (c.bits < 1 || c.bits > 4096) return Status::InvalidArgument("bits must be in [1, 4096]");
  if (c.batch_size < 1) return Status::InvalidArgument("batch size must be >= 1");
  if (c.phase1_epochs < 0 || c.phase2_epochs < 0 || c.phase1_epochs + c.phase2_epochs < 1)
    return Status::InvalidArgument("need >= 1 epoch");
  if (c.cnn_width < 1 || c.feature_dim < 1) return Status::InvalidArgument("bad backbone size");
  if (train.size() == 0) return Status::InvalidArgument("empty training set");
  if (train.class_names.size() < 2) return Status::InvalidArgument("need at least 2 classes");
  if (train.labels.size() != train.size()) return Status::InvalidArgument("labels do not match images");
  for (int y : train.labels)
    if (y < 0 || static_cast<size_t>(y) >= train.class_names.size())
      return Status::InvalidArgument("label outside the class list");
  if (c.backbone != "cnn" && c.backbone != "torchscript")
    return Status::InvalidArgument("backbone must be cnn or torchscript");
  if (c.backbone == "torchscript" && c.torchscript_path.empty())
    return Status::InvalidArgument("torchscript backbone needs a module path");
  return Status::OK();
}

// Input statistics as in TrainLlc: the config's, or per-channel from the data.
StatusOr<PreprocessConfig> Statistics(const torch::Tensor& x_u8, const TrainConfig& c) {
  PreprocessConfig pre = c.preprocess;
  if (!pre.mean.empty()) {
    if (pre.mean.size() != static_cast<size_t>(pre.channels) || pre.stddev.size() != pre.mean.size())
      return Status::InvalidArgument("mean/stddev need one value per channel");
    return pre;
  }
  SetInputStatistics(x_u8, &pre);
  return pre;
}

class TorchHashingModel : public HashingModel {
 public:
  TorchHashingModel(HashingMethod m, int bits, PreprocessConfig pre, LlcNet net,
                    torch::nn::Linear classifier)
      : method_(m),
        bits_(bits),
        pre_(std::move(pre)),
        net_(std::move(net)),
        classifier_(std::move(classifier)) {}

  HashingMethod method() const override { return method_; }
  int bits() const override { return bits_; }

  StatusOr<std::vector<uint8_t>> Codes(const std::vector<Image>& images) const override {
    HAMDB_ASSIGN_OR_RETURN(torch::Tensor z, Logits(images));
    return PackBits(z > 0);
  }

  StatusOr<std::vector<float>> Features(const std::vector<Image>& images) const override {
    HAMDB_ASSIGN_OR_RETURN(torch::Tensor z, Logits(images));
    z = z.contiguous();
    return std::vector<float>(z.data_ptr<float>(), z.data_ptr<float>() + z.numel());
  }

  StatusOr<std::vector<float>> Scores(const std::vector<Image>& images) const override {
    if (method_ == HashingMethod::kFloat) {
      return Status::NotSupported("the float baseline is ranked by cosine; it has no item scores");
    }
    HAMDB_ASSIGN_OR_RETURN(torch::Tensor z, Logits(images));
    try {
      torch::NoGradGuard ng;
      torch::Tensor s;
      if (method_ == HashingMethod::kHashNet) {
        s = z.abs().mean(1);  // the mean margin of the bits from their threshold
      } else {
        // The classifier on the codes as trained (GreedyHash: sign(z); DSNC:
        // 2b - 1, the same): the log-odds of its top class, ln p / (1 - p),
        // from log-softmax so that it stays exact close to p = 1.
        torch::nn::Linear cls = classifier_;
        cls->eval();
        const torch::Tensor logp = torch::log_softmax(cls->forward(torch::where(z > 0, 1.0, -1.0)), 1);
        const auto top = logp.max(1);
        const torch::Tensor best = std::get<0>(top);
        const torch::Tensor others =
            logp.scatter(1, std::get<1>(top).unsqueeze(1), -std::numeric_limits<float>::infinity())
                .logsumexp(1);
        s = best - others;
      }
      s = s.contiguous();
      return std::vector<float>(s.data_ptr<float>(), s.data_ptr<float>() + s.numel());
    } catch (const std::exception& e) {
      return Status::Internal(std::string("scoring failed: ") + e.what());
    }
  }

 private:
  StatusOr<torch::Tensor> Logits(const std::vector<Image>& images) const {
    if (images.empty()) return torch::zeros({0, bits_});
    try {
      HAMDB_ASSIGN_OR_RETURN(torch::Tensor u8, ImagesToTensor(images, pre_));
      torch::NoGradGuard ng;
      LlcNet net = net_;
      net->SetTraining(false);
      std::vector<torch::Tensor> parts;
      for (int64_t s = 0; s < u8.size(0); s += 1024) {
        const int64_t e = std::min(u8.size(0), s + 1024);
        parts.push_back(net->BitLogits(net->Features(Normalize(u8.slice(0, s, e), pre_))));
      }
      return torch::cat(parts, 0);
    } catch (const std::exception& e) {
      return Status::Internal(std::string("encoding failed: ") + e.what());
    }
  }

  HashingMethod method_;
  int bits_;
  PreprocessConfig pre_;
  LlcNet net_;
  torch::nn::Linear classifier_;  // bits -> classes; untrained for HashNet
};

// HashNet's balanced pairwise loss over the pairs i < j of a batch.
torch::Tensor HashNetLoss(const torch::Tensor& h, const torch::Tensor& y, int bits) {
  const int64_t n = h.size(0);
  if (n < 2) return (h * 0).sum();
  const double alpha = 10.0 / bits;
  const torch::Tensor theta = h.matmul(h.t()) * alpha;
  const torch::Tensor s = y.unsqueeze(1).eq(y.unsqueeze(0)).to(torch::kFloat32);
  const torch::Tensor upper = torch::ones({n, n}).triu(1);
  const double pairs = static_cast<double>(n * (n - 1) / 2);
  const double similar = (s * upper).sum().item<double>();
  const double dissimilar = pairs - similar;
  const double ws = similar > 0 ? pairs / similar : 0, wd = dissimilar > 0 ? pairs / dissimilar : 0;
  const torch::Tensor w = (s * ws + (1 - s) * wd) * upper;
  const torch::Tensor l = torch::nn::functional::softplus(theta) - s * theta;
  return (w * l).sum() / w.sum().clamp_min(1e-12);
}

// DSNC's intra/inter-class regulariser on the probabilities p.
torch::Tensor DsncRegulariser(const torch::Tensor& p, const torch::Tensor& y, int num_classes) {
  const int64_t bits = p.size(1);
  const torch::Tensor onehot = torch::one_hot(y, num_classes).to(torch::kFloat32);  // n x L
  const torch::Tensor counts = onehot.sum(0);                                        // L
  const torch::Tensor present = counts > 0;
  const torch::Tensor means = onehot.t().matmul(p) / counts.clamp_min(1).unsqueeze(1);  // L x bits
  const torch::Tensor intra = (p - means.index_select(0, y)).pow(2).sum(1).mean() / bits;
  const torch::Tensor m = means.index({present});
  const int64_t c = m.size(0);
  torch::Tensor inter = torch::zeros({});
  if (c >= 2) {
    const torch::Tensor d = (m.unsqueeze(1) - m.unsqueeze(0)).pow(2).sum(2);  // c x c
    inter = d.sum() / static_cast<double>(c * (c - 1)) / bits;
  }
  return intra - inter;
}

}  // namespace

const char* HashingMethodName(HashingMethod m) {
  switch (m) {
    case HashingMethod::kHashNet: return "hashnet";
    case HashingMethod::kGreedyHash: return "greedyhash";
    case HashingMethod::kDsnc: return "dsnc";
    case HashingMethod::kFloat: return "float";
  }
  return "?";
}

StatusOr<HashingMethod> ParseHashingMethod(const std::string& name) {
  for (HashingMethod m : {HashingMethod::kHashNet, HashingMethod::kGreedyHash, HashingMethod::kDsnc,
                          HashingMethod::kFloat}) {
    if (name == HashingMethodName(m)) return m;
  }
  return Status::InvalidArgument("unknown hashing method '" + name + "' (hashnet, greedyhash, dsnc, float)");
}

StatusOr<std::unique_ptr<HashingModel>> TrainHashingMethod(HashingMethod method, const LabeledImages& train,
                                                           const TrainConfig& c, HashingReport* report) {
  HashingReport local;
  HashingReport& rep = report ? *report : local;
  rep = HashingReport{};
  const auto t0 = Clock::now();
  HAMDB_RETURN_IF_ERROR(ValidateConfig(c, train));
  try {
    if (c.threads > 0) at::set_num_threads(c.threads);
    PreprocessConfig pre = c.preprocess;
    pre.mean.clear();
    pre.stddev.clear();
    HAMDB_ASSIGN_OR_RETURN(torch::Tensor x, ImagesToTensor(train.images, pre));
    HAMDB_ASSIGN_OR_RETURN(pre, Statistics(x, c));
    const torch::Tensor y = torch::tensor(std::vector<int64_t>(train.labels.begin(), train.labels.end()), torch::kInt64);
    const int L = static_cast<int>(train.class_names.size());

    std::shared_ptr<torch::jit::Module> script;
    if (c.backbone == "torchscript") {
      try {
        script = std::make_shared<torch::jit::Module>(torch::jit::load(c.torchscript_path));
      } catch (const std::exception& e) {
        return Status::InvalidArgument(std::string("loading the backbone: ") + e.what());
      }
    }
    BackboneSpec spec;
    spec.type = c.backbone;
    spec.cnn_width = c.cnn_width;
    spec.feature_dim = c.feature_dim;
    torch::manual_seed(c.seed);
    LlcNet net(spec, pre, c.bits, L, script);
    // The classifier on the codes (GreedyHash, DSNC, float); HashNet has none.
    torch::nn::Linear classifier(c.bits, L);
    std::vector<torch::Tensor> params = net->AllParameters(false, false);
    const bool has_classifier = method != HashingMethod::kHashNet;
    if (has_classifier)
      for (const auto& p : classifier->parameters()) params.push_back(p);
    torch::optim::Adam opt(params, torch::optim::AdamOptions(c.lr).weight_decay(c.weight_decay));

    const int64_t n = x.size(0);
    const int64_t steps = (n + c.batch_size - 1) / c.batch_size;
    const int epochs = c.phase1_epochs + c.phase2_epochs;
    const auto ce_opts = torch::nn::functional::CrossEntropyFuncOptions().label_smoothing(c.label_smoothing);
    int64_t step = 0;
    for (int epoch = 0; epoch < epochs; ++epoch) {
      net->SetTraining(true);
      classifier->train(true);
      const std::vector<int64_t> order = EpochOrder(n, c.seed, epoch);
      double loss_sum = 0;
      int64_t correct = 0;
      for (int64_t s = 0; s < steps; ++s, ++step) {
        static_cast<torch::optim::AdamOptions&>(opt.param_groups()[0].options())
            .lr(CosineLr(c.lr, step, static_cast<int64_t>(epochs) * steps));
        const int64_t b0 = s * c.batch_size, b1 = std::min(n, b0 + c.batch_size);
        const torch::Tensor idx = torch::from_blob(const_cast<int64_t*>(order.data()) + b0, {b1 - b0}, torch::kInt64);
        const torch::Tensor xb = Normalize(x.index_select(0, idx), pre);
        const torch::Tensor yb = y.index_select(0, idx);
        opt.zero_grad();
        const torch::Tensor z = net->BitLogits(net->Features(xb));
        torch::Tensor loss, logits;
        switch (method) {
          case HashingMethod::kHashNet: {
            const double beta = std::sqrt(1.0 + 0.005 * static_cast<double>(step));
            loss = HashNetLoss(torch::tanh(beta * z), yb, c.bits);
            break;
          }
          case HashingMethod::kGreedyHash: {
            const torch::Tensor b = z + (torch::sign(z) - z).detach();
            logits = classifier->forward(b);
            loss = torch::nn::functional::cross_entropy(logits, yb, ce_opts) +
                   0.1 * (z.abs() - 1).abs().pow(3).mean();
            break;
          }
          case HashingMethod::kDsnc: {
            const torch::Tensor p = torch::sigmoid(z);
            const torch::Tensor b = p + (torch::bernoulli(p.detach()) - p).detach();
            logits = classifier->forward(2 * b - 1);
            loss = torch::nn::functional::cross_entropy(logits, yb, ce_opts) + 0.1 * DsncRegulariser(p, yb, L);
            break;
          }
          case HashingMethod::kFloat:
            logits = classifier->forward(z);
            loss = torch::nn::functional::cross_entropy(logits, yb, ce_opts);
            break;
        }
        loss.backward();
        opt.step();
        loss_sum += loss.item<double>() * (b1 - b0);
        if (logits.defined()) correct += logits.argmax(1).eq(yb).sum().item<int64_t>();
      }
      rep.epoch_loss.push_back(loss_sum / n);
      if (has_classifier) rep.train_accuracy = static_cast<double>(correct) / n;
      if (c.progress) {
        char buf[256];
        std::snprintf(buf, sizeof(buf), "%s epoch %d/%d done: loss %.4f%s elapsed %.0fs", HashingMethodName(method),
                      epoch + 1, epochs, loss_sum / n,
                      has_classifier ? (" acc " + std::to_string(rep.train_accuracy)).c_str() : "", Since(t0));
        c.progress(buf);
      }
    }
    net->SetTraining(false);
    rep.seconds = Since(t0);
    return std::unique_ptr<HashingModel>(new TorchHashingModel(method, c.bits, pre, net, classifier));
  } catch (const std::exception& e) {
    return Status::Internal(std::string(HashingMethodName(method)) + " training failed: " + e.what());
  }
}

StatusOr<std::vector<std::vector<uint32_t>>> CosineTopK(const std::vector<float>& queries,
                                                        const std::vector<float>& db, int dim, size_t k) {
  if (dim < 1) return Status::InvalidArgument("dim must be >= 1");
  if (queries.size() % dim != 0 || db.size() % dim != 0)
    return Status::InvalidArgument("feature arrays are not a multiple of dim");
  const int64_t nq = static_cast<int64_t>(queries.size() / dim), ndb = static_cast<int64_t>(db.size() / dim);
  if (ndb > static_cast<int64_t>(UINT32_MAX)) return Status::InvalidArgument("database too large");
  k = std::min<size_t>(k, static_cast<size_t>(ndb));
  std::vector<std::vector<uint32_t>> out(nq);
  try {
    torch::NoGradGuard ng;
    auto unit = [dim](const std::vector<float>& v, int64_t rows) {
      const torch::Tensor t = torch::from_blob(const_cast<float*>(v.data()), {rows, dim}, torch::kFloat32);
      return t / t.norm(2, 1, true).clamp_min(1e-30);
    };
    const torch::Tensor q = unit(queries, nq), d = unit(db, ndb).t().contiguous();
    std::vector<uint32_t> idx(ndb);
    for (int64_t s = 0; s < nq; s += 256) {
      const int64_t e = std::min(nq, s + 256);
      const torch::Tensor sim = q.slice(0, s, e).matmul(d).contiguous();
      for (int64_t i = s; i < e; ++i) {
        const float* row = sim.data_ptr<float>() + (i - s) * ndb;
        std::iota(idx.begin(), idx.end(), 0u);
        auto before = [row](uint32_t a, uint32_t b) { return row[a] > row[b] || (row[a] == row[b] && a < b); };
        if (k < idx.size()) std::nth_element(idx.begin(), idx.begin() + k, idx.end(), before);
        std::sort(idx.begin(), idx.begin() + k, before);
        out[i].assign(idx.begin(), idx.begin() + k);
      }
    }
  } catch (const std::exception& e) {
    return Status::Internal(std::string("cosine ranking failed: ") + e.what());
  }
  return out;
}

}  // namespace hamdb
