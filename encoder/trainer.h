// LLC training (Kusupati et al., NeurIPS 2021) of an Encoder, the
// full-precision baseline, and evaluation on a labelled test set.
//
// Phase 1 (codebook learning): bit logits z = P f(x), class logits
// sign(C) z with a straight-through sign on the latent codebook C
// (classes x bits), cross-entropy with optional label smoothing. The class
// codes are sign(C). Fewer unique class codes than classes (collapse) makes
// TrainLlc fail with FailedPrecondition naming the count.
// Phase 2 (instance codes): C frozen; backbone and P warm-started from phase
// 1 and trained with a per-bit binary cross-entropy of z against
// (sign(C_y) + 1) / 2.
//
// Deterministic on CPU for a given seed and thread count: the same inputs
// give bit-identical artifacts. With a checkpoint path, the state is written
// after every epoch (atomically); resuming from it skips the finished epochs
// and gives the same result as an uninterrupted run.
//
// The header is torch-free; the implementation needs hamdb_encoder.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "encoder/dataset.h"
#include "encoder/encoder.h"
#include "core/status.h"

namespace hamdb {

struct TrainConfig {
  int bits = 16;
  // Backbone: "cnn" (built in) or "torchscript" (torchscript_path: a module
  // mapping N x C x H x W float input to N x d, or N x ... flattened, features).
  std::string backbone = "cnn";
  std::string torchscript_path;
  int cnn_width = 16;
  int feature_dim = 128;
  PreprocessConfig preprocess;  // mean/stddev empty: computed from the data

  int phase1_epochs = 2;
  int phase2_epochs = 2;
  int batch_size = 128;
  double lr = 2e-3;
  double codebook_lr = 2e-2;
  double weight_decay = 0;
  double label_smoothing = 0.1;
  uint64_t seed = 1;
  int threads = 0;  // 0: leave libtorch's setting alone
  uint32_t ood_radius = 0;
  // The artifact's snap margin (encoder.h, Snapping). 2 was chosen on a
  // validation split of the training images (the first 50,000 as the
  // database, the last 10,000 as queries): MAP@1000 under tie_break score
  // rises from 0 up to 2 and is flat beyond, at 16 and 64 bits alike.
  // In [0, 16]; checked before training starts.
  double snap_margin = 2.0;

  std::string checkpoint_path;  // empty: no checkpoints
  bool resume = false;          // start from checkpoint_path when it exists
  // Stop once this many epochs (phase 1 + phase 2, counted from the start of
  // training) are done and checkpointed, returning FailedPrecondition
  // ("stopped after ..."); 0 = run to the end. For time-boxed runs and tests.
  int stop_after_epochs = 0;

  // Receives one line per progress report (about every progress_every
  // batches and at the end of every epoch). Null: silent.
  std::function<void(const std::string&)> progress;
  int progress_every = 100;
};

struct TrainReport {
  double seconds = 0;
  std::vector<double> epoch_loss;        // mean loss per epoch, phase 1 then phase 2
  double phase1_train_accuracy = 0;      // last phase-1 epoch, on the training batches
  double phase1_eval_accuracy = -1;      // sign(C) z argmax on the eval set after phase 1, -1 if none
  size_t unique_class_codes = 0;
  size_t num_classes = 0;
  int resumed_epochs = 0;                // epochs skipped thanks to a checkpoint
};

// Trains an LLC encoder on `train` (eval: optional, for phase1_eval_accuracy).
StatusOr<std::unique_ptr<Encoder>> TrainLlc(const LabeledImages& train, const LabeledImages* eval,
                                            const TrainConfig& config, TrainReport* report);

// The full-precision baseline: the same backbone plus a linear softmax head,
// trained for phase1_epochs + phase2_epochs with the same optimiser; returns
// its accuracy on `test`.
struct BaselineReport {
  double test_accuracy = 0;
  double seconds = 0;
};
StatusOr<BaselineReport> TrainBaseline(const LabeledImages& train, const LabeledImages& test,
                                       const TrainConfig& config);

// Accuracy of an encoder on a labelled set.
struct EncoderEvaluation {
  size_t n = 0;
  double ed_accuracy = 0;         // code equals the true class code
  double mhd_accuracy = 0;        // MHD class (ties by bit probabilities) is the true class
  double class_code_accuracy = 0; // argmax of sign(C) z (the phase-1 classifier)
  double mean_bits_correct = 0;   // bits agreeing with the true class code, averaged
  double ood_rate = 0;            // flagged out of distribution at the artifact's radius
  size_t unique_class_codes = 0;
  double images_per_second = 0;   // Encode throughput during the evaluation
};
StatusOr<EncoderEvaluation> EvaluateEncoder(const Encoder& encoder, const LabeledImages& test,
                                            size_t batch_size = 512);

}  // namespace hamdb
