// Deep hashing baselines for the MAP@k benchmark, trained on the
// same backbone, optimiser, epoch budget and batch order as LLC
// (encoder/trainer.h) so that only the hashing objective differs.
//
// Every method uses the network of encoder/llc_model.h: backbone f (the
// built-in CNN, or a TorchScript module) and the projection P: d -> bits
// giving z = P f(x). Training: Adam (config.lr, config.weight_decay), cosine
// learning-rate decay over phase1_epochs + phase2_epochs epochs (the whole
// LLC budget), config.batch_size, the epoch order of TrainLlc (a function of
// seed and epoch). Classifier cross-entropies use config.label_smoothing,
// as LLC does.
//
//  - kHashNet (Cao et al., ICCV 2017): h = tanh(beta z), beta = sqrt(1 +
//    0.005 step) (continuation). Weighted pairwise cross-entropy over all
//    pairs i < j of the batch, with theta_ij = (10 / bits) <h_i, h_j> and
//    s_ij = [y_i == y_j]:
//      loss = sum w_ij (softplus(theta_ij) - s_ij theta_ij) / sum w_ij,
//    w_ij = #pairs / #similar for similar pairs, #pairs / #dissimilar for
//    dissimilar ones. Codes: bit = z > 0.
//  - kGreedyHash (Su et al., NeurIPS 2018): b = sign(z) forward, identity
//    backward; a linear classifier (bits -> classes) on b with cross-entropy
//    plus 0.1 * mean(| |z| - 1 |^3). Codes: bit = z > 0.
//  - kDsnc (Gerald et al., 2019): p = sigmoid(z); in training b ~
//    Bernoulli(p) with a straight-through gradient to p; a linear decoder
//    (bits -> classes) on 2b - 1 with cross-entropy, plus the regulariser
//    0.1 * (intra - inter): intra = mean over the batch of ||p_i - m_{y_i}||^2
//    / bits, inter = mean over pairs of distinct classes present in the
//    batch of ||m_c - m_c'||^2 / bits, m_c the mean p of class c in the
//    batch. Codes: bit = p > 0.5 (= z > 0).
//  - kFloat: the real-valued baseline: the same z (bits dims, no
//    binarisation) with a linear softmax classifier (bits -> classes) and
//    cross-entropy. Features() returns z, to be ranked by cosine
//    (CosineTopK). Codes() gives sign(z) too, for reference.
//
// Deterministic on CPU for a given seed and thread count (DSNC's Bernoulli
// draws come from torch's generator, seeded from config.seed).
//
// Errors: InvalidArgument for a bad config or data (see TrainLlc), Internal
// for a libtorch failure. The header is torch-free; the implementation needs
// hamdb_encoder.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "encoder/dataset.h"
#include "encoder/trainer.h"
#include "core/status.h"

namespace hamdb {

enum class HashingMethod { kHashNet, kGreedyHash, kDsnc, kFloat };

// "hashnet", "greedyhash", "dsnc", "float".
const char* HashingMethodName(HashingMethod m);
StatusOr<HashingMethod> ParseHashingMethod(const std::string& name);

struct HashingReport {
  double seconds = 0;
  std::vector<double> epoch_loss;  // mean training loss per epoch
  double train_accuracy = -1;      // classifier accuracy on the last epoch's batches (-1: no classifier)
};

// A trained model. Thread-compatible (const methods may run concurrently
// only if libtorch inference does; the benchmark calls them from one thread).
class HashingModel {
 public:
  virtual ~HashingModel() = default;
  virtual HashingMethod method() const = 0;
  virtual int bits() const = 0;
  // Packed LSB-first codes, images.size() * code_bytes(bits) bytes.
  virtual StatusOr<std::vector<uint8_t>> Codes(const std::vector<Image>& images) const = 0;
  // Real-valued z, images.size() * bits floats, row-major.
  virtual StatusOr<std::vector<float>> Features(const std::vector<Image>& images) const = 0;
  // One item score per image (core/score.h), the method's own confidence:
  // GreedyHash and DSNC, the log-odds of their classifier's top class on the
  // code, ln p / (1 - p) (as LLC's score is the log-odds of its confidence);
  // HashNet, which has no classifier, the mean |z| over bits (how far its
  // projections sit from the sign threshold). NotSupported for kFloat.
  virtual StatusOr<std::vector<float>> Scores(const std::vector<Image>& images) const = 0;
};

StatusOr<std::unique_ptr<HashingModel>> TrainHashingMethod(HashingMethod method, const LabeledImages& train,
                                                           const TrainConfig& config, HashingReport* report);

// For each query row, the k database rows of highest cosine similarity,
// ordered by (similarity descending, index ascending). queries: nq x dim,
// db: ndb x dim, row-major. Zero vectors have similarity 0 to everything.
StatusOr<std::vector<std::vector<uint32_t>>> CosineTopK(const std::vector<float>& queries,
                                                        const std::vector<float>& db, int dim, size_t k);

}  // namespace hamdb
