// Encoder artifact, network and inference. The artifact layout is described
// in docs/encoder.md:
//   "HAMDBENC" | u32 version | u64 n + JSON meta | u64 n + weights archive
//   | u64 n + TorchScript module (n = 0 for the built-in CNN)
//   | u64 FNV-1a 64 of all preceding bytes. Integers little-endian.
#include <c10/core/InferenceMode.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "encoder/llc_model.h"
#include "core/binary_code.h"
#include "core/score.h"

namespace hamdb {
namespace {

using nlohmann::json;

constexpr char kMagic[8] = {'H', 'A', 'M', 'D', 'B', 'E', 'N', 'C'};

uint64_t Fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  return h;
}

void PutU64(std::string* out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
void PutU32(std::string* out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

struct Reader {
  const std::string& s;
  size_t pos = 0;
  bool U64(uint64_t* v) {
    if (s.size() - pos < 8) return false;
    *v = 0;
    for (int i = 0; i < 8; ++i) *v |= uint64_t{static_cast<unsigned char>(s[pos + i])} << (8 * i);
    pos += 8;
    return true;
  }
  bool U32(uint32_t* v) {
    if (s.size() - pos < 4) return false;
    *v = 0;
    for (int i = 0; i < 4; ++i) *v |= uint32_t{static_cast<unsigned char>(s[pos + i])} << (8 * i);
    pos += 4;
    return true;
  }
  bool Blob(std::string* out) {
    uint64_t n;
    if (!U64(&n) || s.size() - pos < n) return false;
    out->assign(s, pos, n);
    pos += n;
    return true;
  }
};

std::string ToHexBytes(const uint8_t* p, size_t n) {
  static const char* kHex = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) {
    s.push_back(kHex[p[i] >> 4]);
    s.push_back(kHex[p[i] & 15]);
  }
  return s;
}

bool FromHexBytes(const std::string& s, std::vector<uint8_t>* out) {
  if (s.size() % 2) return false;
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < s.size(); i += 2) {
    const int a = nib(s[i]), b = nib(s[i + 1]);
    if (a < 0 || b < 0) return false;
    out->push_back(static_cast<uint8_t>(a * 16 + b));
  }
  return true;
}

json MetaToJson(const EncoderMeta& m) {
  json j;
  j["method"] = m.method;
  j["bits"] = m.bits;
  j["backbone"] = {{"type", m.backbone.type},
                   {"cnn_width", m.backbone.cnn_width},
                   {"feature_dim", m.backbone.feature_dim}};
  const PreprocessConfig& p = m.preprocess;
  j["preprocess"] = {{"channels", p.channels},       {"resize_width", p.resize_width},
                     {"resize_height", p.resize_height}, {"crop_width", p.crop_width},
                     {"crop_height", p.crop_height},   {"mean", p.mean},
                     {"stddev", p.stddev}};
  j["class_names"] = m.class_names;
  const size_t cb = (static_cast<size_t>(m.bits) + 7) / 8;
  json codes = json::array();
  for (size_t c = 0; c * cb < m.class_codes.size(); ++c) codes.push_back(ToHexBytes(m.class_codes.data() + c * cb, cb));
  j["class_codes"] = codes;
  j["ood_radius"] = m.ood_radius;
  j["snap_margin"] = m.snap_margin;
  j["training"] = json::parse(m.training_json, nullptr, false);
  if (j["training"].is_discarded()) j["training"] = json::object();
  return j;
}

Status MetaFromJson(const std::string& text, EncoderMeta* m) {
  json j = json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return Status::Corruption("artifact metadata is not JSON");
  try {
    m->method = j.at("method").get<std::string>();
    m->bits = j.at("bits").get<int>();
    const json& b = j.at("backbone");
    m->backbone.type = b.at("type").get<std::string>();
    m->backbone.cnn_width = b.at("cnn_width").get<int>();
    m->backbone.feature_dim = b.at("feature_dim").get<int>();
    const json& p = j.at("preprocess");
    m->preprocess.channels = p.at("channels").get<int>();
    m->preprocess.resize_width = p.at("resize_width").get<int>();
    m->preprocess.resize_height = p.at("resize_height").get<int>();
    m->preprocess.crop_width = p.at("crop_width").get<int>();
    m->preprocess.crop_height = p.at("crop_height").get<int>();
    m->preprocess.mean = p.at("mean").get<std::vector<float>>();
    m->preprocess.stddev = p.at("stddev").get<std::vector<float>>();
    m->class_names = j.at("class_names").get<std::vector<std::string>>();
    m->class_codes.clear();
    for (const auto& c : j.at("class_codes")) {
      if (!FromHexBytes(c.get<std::string>(), &m->class_codes)) return Status::Corruption("bad class code hex");
    }
    m->ood_radius = j.at("ood_radius").get<uint32_t>();
    m->snap_margin = j.value("snap_margin", 0.0f);
    m->training_json = j.contains("training") ? j["training"].dump() : "{}";
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("artifact metadata: ") + e.what());
  }
  return Status::OK();
}

Status ValidatePreprocess(const PreprocessConfig& p) {
  if (p.channels != 1 && p.channels != 3) return Status::InvalidArgument("preprocess channels must be 1 or 3");
  if (p.resize_width <= 0 || p.resize_height <= 0) return Status::InvalidArgument("bad resize size");
  if (p.crop_width < 0 || p.crop_height < 0 || p.crop_width > p.resize_width ||
      p.crop_height > p.resize_height) {
    return Status::InvalidArgument("crop must fit inside the resized image");
  }
  if (p.mean.size() != static_cast<size_t>(p.channels) || p.stddev.size() != p.mean.size()) {
    return Status::InvalidArgument("mean/stddev need one value per channel");
  }
  for (float s : p.stddev) {
    if (!(s > 0)) return Status::InvalidArgument("stddev must be > 0");
  }
  return Status::OK();
}

}  // namespace

int InputHeight(const PreprocessConfig& p) { return p.crop_height > 0 ? p.crop_height : p.resize_height; }
int InputWidth(const PreprocessConfig& p) { return p.crop_width > 0 ? p.crop_width : p.resize_width; }

// ------------------------------------------------------------------ network

LlcNetImpl::LlcNetImpl(const BackboneSpec& s, const PreprocessConfig& pre, int bits, int num_classes,
                       std::shared_ptr<torch::jit::Module> sc)
    : spec(s), script(std::move(sc)) {
  const int h = InputHeight(pre), w = InputWidth(pre);
  if (spec.type == "torchscript") {
    torch::NoGradGuard ng;
    script->eval();
    auto out = script->forward({torch::zeros({1, pre.channels, h, w})}).toTensor();
    spec.feature_dim = static_cast<int>(out.reshape({1, -1}).size(1));
  } else {
    const int c1 = spec.cnn_width, c2 = 2 * spec.cnn_width;
    cnn = torch::nn::Sequential(
        torch::nn::Conv2d(torch::nn::Conv2dOptions(pre.channels, c1, 3).padding(1).bias(false)),
        torch::nn::BatchNorm2d(c1), torch::nn::ReLU(), torch::nn::MaxPool2d(2),
        torch::nn::Conv2d(torch::nn::Conv2dOptions(c1, c2, 3).padding(1).bias(false)),
        torch::nn::BatchNorm2d(c2), torch::nn::ReLU(), torch::nn::MaxPool2d(2), torch::nn::Flatten(),
        torch::nn::Linear(static_cast<int64_t>(c2) * (h / 4) * (w / 4), spec.feature_dim),
        torch::nn::ReLU());
    register_module("cnn", cnn);
  }
  proj = register_module("proj", torch::nn::Linear(spec.feature_dim, bits));
  head = register_module("head", torch::nn::Linear(spec.feature_dim, num_classes));
  latent_codebook = register_parameter("codebook", torch::randn({num_classes, bits}));
}

torch::Tensor LlcNetImpl::Features(const torch::Tensor& x) {
  if (script) return script->forward({x}).toTensor().reshape({x.size(0), -1});
  return cnn->forward(x);
}

torch::Tensor LlcNetImpl::SignedCodebook() const {
  const torch::Tensor s = torch::sign(latent_codebook);
  // sign(0) = 0 would give a zero logit contribution; treat it as +1.
  const torch::Tensor hard = torch::where(s == 0, torch::ones_like(s), s);
  return latent_codebook + (hard - latent_codebook).detach();
}

std::vector<torch::Tensor> LlcNetImpl::AllParameters(bool with_codebook, bool with_head) {
  std::vector<torch::Tensor> out;
  for (const auto& p : named_parameters(/*recurse=*/true)) {
    if (!with_codebook && p.key() == "codebook") continue;
    if (!with_head && p.key().rfind("head.", 0) == 0) continue;
    out.push_back(p.value());
  }
  if (script) {
    for (const auto& p : script->parameters()) out.push_back(p);
  }
  return out;
}

void LlcNetImpl::SetTraining(bool on) {
  train(on);
  if (script) script->train(on);
}

std::string SerializeWeights(LlcNet& net, bool with_codebook) {
  torch::serialize::OutputArchive ar;
  for (const auto& p : net->named_parameters(true)) {
    if (!with_codebook && p.key() == "codebook") continue;
    ar.write(p.key(), p.value());
  }
  for (const auto& b : net->named_buffers(true)) ar.write(b.key(), b.value(), /*is_buffer=*/true);
  std::ostringstream os;
  ar.save_to(os);
  return os.str();
}

Status DeserializeWeights(LlcNet& net, const std::string& bytes, bool with_codebook) {
  try {
    torch::serialize::InputArchive ar;
    std::istringstream is(bytes);
    ar.load_from(is);
    torch::NoGradGuard ng;
    for (auto& p : net->named_parameters(true)) {
      if (!with_codebook && p.key() == "codebook") continue;
      torch::Tensor t;
      if (!ar.try_read(p.key(), t)) return Status::Corruption("missing weight " + p.key());
      if (t.sizes() != p.value().sizes()) return Status::Corruption("shape mismatch for " + p.key());
      p.value().copy_(t);
    }
    for (auto& b : net->named_buffers(true)) {
      torch::Tensor t;
      if (!ar.try_read(b.key(), t, true)) return Status::Corruption("missing buffer " + b.key());
      if (t.sizes() != b.value().sizes()) return Status::Corruption("shape mismatch for " + b.key());
      b.value().copy_(t);
    }
  } catch (const std::exception& e) {
    return Status::Corruption(std::string("weights: ") + e.what());
  }
  return Status::OK();
}

// ------------------------------------------------------------ preprocessing

StatusOr<torch::Tensor> ImagesToTensor(const std::vector<Image>& images, const PreprocessConfig& pre) {
  const int h = InputHeight(pre), w = InputWidth(pre), c = pre.channels;
  const size_t per = static_cast<size_t>(h) * w * c;
  torch::Tensor out = torch::empty({static_cast<int64_t>(images.size()), c, h, w}, torch::kUInt8);
  uint8_t* dst = out.data_ptr<uint8_t>();
  for (size_t i = 0; i < images.size(); ++i) {
    const Image& in = images[i];
    if (in.empty() || in.width <= 0 || in.height <= 0 ||
        in.pixels.size() != static_cast<size_t>(in.width) * in.height * in.channels) {
      return Status::InvalidArgument("image " + std::to_string(i) + " is empty or malformed");
    }
    if (in.channels != 1 && in.channels != 3) {
      return Status::InvalidArgument("image " + std::to_string(i) + " has " + std::to_string(in.channels) +
                                     " channels (need 1 or 3)");
    }
    const Image* cur = &in;
    Image tmp;
    if (cur->channels != c) {
      tmp = ConvertChannels(*cur, c);
      cur = &tmp;
    }
    if (cur->width != pre.resize_width || cur->height != pre.resize_height) {
      Image r = ResizeBilinear(*cur, pre.resize_width, pre.resize_height);
      tmp = std::move(r);
      cur = &tmp;
    }
    if (cur->width != w || cur->height != h) {
      Image r = CenterCrop(*cur, w, h);
      tmp = std::move(r);
      cur = &tmp;
    }
    uint8_t* o = dst + i * per;
    if (c == 1) {
      std::memcpy(o, cur->pixels.data(), per);
    } else {  // HWC -> CHW
      const size_t hw = static_cast<size_t>(h) * w;
      for (size_t p = 0; p < hw; ++p)
        for (int k = 0; k < c; ++k) o[k * hw + p] = cur->pixels[p * c + k];
    }
  }
  return out;
}

torch::Tensor Normalize(const torch::Tensor& u8, const PreprocessConfig& pre) {
  const int c = pre.channels;
  torch::Tensor x = u8.to(torch::kFloat32).div_(255.f);
  torch::Tensor mean = torch::from_blob(const_cast<float*>(pre.mean.data()), {1, c, 1, 1}).clone();
  torch::Tensor sd = torch::from_blob(const_cast<float*>(pre.stddev.data()), {1, c, 1, 1}).clone();
  return x.sub_(mean).div_(sd);
}

std::vector<uint8_t> PackBits(const torch::Tensor& bits_bool) {
  const torch::Tensor b = bits_bool.to(torch::kUInt8).contiguous();
  const int64_t n = b.size(0), k = b.size(1);
  const size_t cb = (static_cast<size_t>(k) + 7) / 8;
  std::vector<uint8_t> out(n * cb, 0);
  const uint8_t* p = b.data_ptr<uint8_t>();
  for (int64_t i = 0; i < n; ++i)
    for (int64_t j = 0; j < k; ++j)
      if (p[i * k + j]) out[i * cb + j / 8] |= static_cast<uint8_t>(1u << (j % 8));
  return out;
}

// ------------------------------------------------------------------ encoder

Status ValidateSnapMargin(double m) {
  if (!(m >= 0) || !(m <= kMaxSnapMargin)) {
    return Status::InvalidArgument("snap margin must be in [0, " + std::to_string(kMaxSnapMargin) + "] (got " +
                                   std::to_string(m) + ")");
  }
  return Status::OK();
}

StatusOr<std::unique_ptr<TorchEncoder>> TorchEncoder::Create(EncoderMeta meta, LlcNet net) {
  HAMDB_RETURN_IF_ERROR(ValidatePreprocess(meta.preprocess));
  HAMDB_RETURN_IF_ERROR(ValidateSnapMargin(meta.snap_margin));
  HAMDB_ASSIGN_OR_RETURN(Codebook cb, Codebook::Create(meta.bits, meta.class_codes, meta.class_names));
  net->SetTraining(false);
  return std::unique_ptr<TorchEncoder>(new TorchEncoder(std::move(meta), std::move(net), std::move(cb)));
}

torch::Tensor TorchEncoder::LogitsOfTensor(const torch::Tensor& u8) const {
  c10::InferenceMode guard;
  constexpr int64_t kChunk = 512;
  LlcNet net = net_;  // a non-const handle; forward in eval mode only reads it
  std::vector<torch::Tensor> parts;
  for (int64_t s = 0; s < u8.size(0); s += kChunk) {
    const torch::Tensor x = Normalize(u8.slice(0, s, std::min(u8.size(0), s + kChunk)), meta_.preprocess);
    parts.push_back(net->BitLogits(net->Features(x)));
  }
  if (parts.empty()) return torch::empty({0, meta_.bits});
  return parts.size() == 1 ? parts[0] : torch::cat(parts, 0);
}

StatusOr<std::vector<EncodedImage>> TorchEncoder::Encode(const std::vector<Image>& images) const {
  std::vector<EncodedImage> out;
  if (images.empty()) return out;
  HAMDB_ASSIGN_OR_RETURN(torch::Tensor u8, ImagesToTensor(images, meta_.preprocess));
  torch::Tensor probs;
  std::vector<uint8_t> codes;
  try {
    c10::InferenceMode guard;
    const torch::Tensor logits = LogitsOfTensor(u8);
    probs = torch::sigmoid(logits).contiguous();
    codes = PackBits(probs > 0.5);
  } catch (const std::exception& e) {
    return Status::Internal(std::string("encoder forward failed: ") + e.what());
  }
  const int k = meta_.bits;
  const size_t cb = codebook_.code_bytes();
  const float* p = probs.data_ptr<float>();
  // |logit| < m exactly when sigmoid(-m) < p < sigmoid(m).
  const float snap_lo = static_cast<float>(1.0 / (1.0 + std::exp(static_cast<double>(meta_.snap_margin))));
  const float snap_hi = static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(meta_.snap_margin))));
  out.resize(images.size());
  for (size_t i = 0; i < images.size(); ++i) {
    EncodedImage& e = out[i];
    e.code.assign(codes.begin() + i * cb, codes.begin() + (i + 1) * cb);
    e.bit_probs.assign(p + i * k, p + (i + 1) * k);
    e.decode = codebook_.Decode(e.code.data(), e.bit_probs.data(), meta_.ood_radius);
    const uint8_t* cc = codebook_.class_code(e.decode.class_index);
    double conf = 0;
    for (int j = 0; j < k; ++j) {
      const bool bit = (cc[j / 8] >> (j % 8)) & 1;
      conf += bit ? e.bit_probs[j] : 1.0 - e.bit_probs[j];
    }
    const double c = conf / k;
    e.confidence = static_cast<float>(c);
    e.score = static_cast<float>(ConfidenceLogOdds(c));
    if (meta_.snap_margin > 0) {
      for (int j = 0; j < k; ++j) {
        const float pj = e.bit_probs[j];
        if (pj > snap_lo && pj < snap_hi) SetBit(e.code.data(), j, (cc[j / 8] >> (j % 8)) & 1);
      }
    }
  }
  return out;
}

Status TorchEncoder::Save(const std::string& path) const {
  std::string body(kMagic, sizeof(kMagic));
  PutU32(&body, meta_.snap_margin > 0 ? kEncoderFormatVersion : kEncoderFormatNoSnap);
  try {
    const std::string meta = MetaToJson(meta_).dump(1);
    PutU64(&body, meta.size());
    body += meta;
    LlcNet net = net_;
    const std::string weights = SerializeWeights(net, /*with_codebook=*/true);
    PutU64(&body, weights.size());
    body += weights;
    std::string script;
    if (net_->script) {
      std::ostringstream os;
      net_->script->save(os);
      script = os.str();
    }
    PutU64(&body, script.size());
    body += script;
  } catch (const std::exception& e) {
    return Status::Internal(std::string("serialising the encoder: ") + e.what());
  }
  PutU64(&body, Fnv1a(body));

  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) return Status::IOError(tmp + ": cannot create");
    out.write(body.data(), static_cast<std::streamsize>(body.size()));
    out.flush();
    if (!out) {
      std::remove(tmp.c_str());
      return Status::IOError(tmp + ": write failed");
    }
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::remove(tmp.c_str());
    return Status::IOError(path + ": rename failed: " + ec.message());
  }
  return Status::OK();
}

StatusOr<std::unique_ptr<Encoder>> Encoder::Load(const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return Status::NotFound(path + ": no such file");
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::IOError(path + ": cannot open");
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return Status::IOError(path + ": read failed");
  if (bytes.size() < sizeof(kMagic) + 4 + 8 || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return Status::Corruption(path + ": not a hamdb encoder artifact");
  }
  Reader r{bytes, sizeof(kMagic)};
  uint32_t version = 0;
  r.U32(&version);
  if (version != kEncoderFormatVersion && version != kEncoderFormatNoSnap) {
    return Status::NotSupported(path + ": artifact format version " + std::to_string(version) +
                                " (this build reads " + std::to_string(kEncoderFormatNoSnap) + " and " +
                                std::to_string(kEncoderFormatVersion) + ")");
  }
  {
    Reader tail{bytes, bytes.size() - 8};
    uint64_t sum = 0;
    tail.U64(&sum);
    if (sum != Fnv1a(bytes.substr(0, bytes.size() - 8))) {
      return Status::Corruption(path + ": checksum mismatch (truncated or damaged file)");
    }
  }
  std::string meta_json, weights, script_bytes;
  if (!r.Blob(&meta_json) || !r.Blob(&weights) || !r.Blob(&script_bytes)) {
    return Status::Corruption(path + ": truncated artifact");
  }
  EncoderMeta meta;
  Status st = MetaFromJson(meta_json, &meta);
  if (!st.ok()) return st.WithContext(path);
  if (meta.bits <= 0 || meta.class_names.empty()) return Status::Corruption(path + ": bad bits or classes");
  st = ValidatePreprocess(meta.preprocess);
  if (!st.ok()) return Status::Corruption(path + ": " + st.message());
  try {
    std::shared_ptr<torch::jit::Module> script;
    if (meta.backbone.type == "torchscript") {
      if (script_bytes.empty()) return Status::Corruption(path + ": TorchScript backbone missing");
      std::istringstream is(script_bytes);
      script = std::make_shared<torch::jit::Module>(torch::jit::load(is));
    } else if (meta.backbone.type != "cnn") {
      return Status::NotSupported(path + ": unknown backbone " + meta.backbone.type);
    }
    LlcNet net(meta.backbone, meta.preprocess, meta.bits, static_cast<int>(meta.class_names.size()), script);
    st = DeserializeWeights(net, weights, /*with_codebook=*/true);
    if (!st.ok()) return st.WithContext(path);
    HAMDB_ASSIGN_OR_RETURN(std::unique_ptr<TorchEncoder> enc, TorchEncoder::Create(std::move(meta), net));
    return std::unique_ptr<Encoder>(std::move(enc));
  } catch (const std::exception& e) {
    return Status::Corruption(path + ": " + e.what());
  }
}

}  // namespace hamdb
