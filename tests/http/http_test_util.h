// Test helpers for the HTTP service: a blocking HTTP/1.1 client (Beast), raw
// socket exchanges for malformed input, a fake image encoder and a fixture
// that runs a server in-process on an ephemeral port.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "db/code_store.h"
#include "encoder/encoder.h"
#include "encoder/image.h"
#include "http/server.h"
#include "http/service.h"
#include "core/binary_code.h"

namespace hamdb::http::testing {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using nlohmann::json;

class TempDir {
 public:
  TempDir() {
    std::random_device rd;
    path_ = std::filesystem::temp_directory_path() /
            ("hamdb_http_test_" + std::to_string(::getpid()) + "_" + std::to_string(rd()));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  std::string path() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

struct HttpReply {
  int status = 0;
  std::string body;
  std::map<std::string, std::string> headers;
  bool keep_alive = false;
  json Json() const { return json::parse(body, nullptr, false); }
  std::string ErrorCode() const {
    json j = Json();
    if (j.is_object() && j.contains("error") && j["error"].contains("code")) {
      return j["error"]["code"].get<std::string>();
    }
    return "";
  }
};

// A keep-alive connection to the server.
class Client {
 public:
  explicit Client(uint16_t port) : socket_(ioc_) {
    socket_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  }

  HttpReply Request(const std::string& method, const std::string& target,
                    const std::string& body = "", const std::string& content_type = "",
                    const std::map<std::string, std::string>& headers = {}) {
    bhttp::request<bhttp::string_body> req(bhttp::string_to_verb(method), target, 11);
    req.set(bhttp::field::host, "127.0.0.1");
    if (!content_type.empty()) req.set(bhttp::field::content_type, content_type);
    for (const auto& [k, v] : headers) req.set(k, v);
    req.body() = body;
    req.prepare_payload();
    bhttp::write(socket_, req);
    return ReadReply(method == "HEAD");
  }

  HttpReply ReadReply(bool head = false) {
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(1u << 30);
    parser.skip(head);
    bhttp::read(socket_, buffer_, parser);
    HttpReply r;
    auto& res = parser.get();
    r.status = static_cast<int>(res.result_int());
    r.body = res.body();
    r.keep_alive = res.keep_alive();
    for (const auto& f : res) r.headers[std::string(f.name_string())] = std::string(f.value());
    return r;
  }

  tcp::socket& socket() { return socket_; }

 private:
  asio::io_context ioc_;
  tcp::socket socket_;
  beast::flat_buffer buffer_;
};

// One request on a fresh connection.
inline HttpReply Call(uint16_t port, const std::string& method, const std::string& target,
                      const std::string& body = "", const std::string& content_type = "",
                      const std::map<std::string, std::string>& headers = {}) {
  Client c(port);
  return c.Request(method, target, body, content_type, headers);
}

inline HttpReply PostJson(uint16_t port, const std::string& target, const json& body,
                          const std::map<std::string, std::string>& headers = {}) {
  return Call(port, "POST", target, body.dump(), "application/json", headers);
}

// Sends raw bytes, half-closes, and returns everything the server sends back
// until it closes the connection.
inline std::string RawExchange(uint16_t port, const std::string& bytes, bool half_close = true) {
  asio::io_context ioc;
  tcp::socket s(ioc);
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  boost::system::error_code ec;
  asio::write(s, asio::buffer(bytes), ec);
  if (half_close) s.shutdown(tcp::socket::shutdown_send, ec);
  std::string out;
  char buf[4096];
  for (;;) {
    size_t n = s.read_some(asio::buffer(buf), ec);
    out.append(buf, n);
    if (ec) break;
  }
  return out;
}

// Status code of the first response in a raw reply ("HTTP/1.1 413 ..."), or 0.
inline int RawStatus(const std::string& reply) {
  if (reply.size() < 12 || reply.compare(0, 5, "HTTP/") != 0) return 0;
  return std::atoi(reply.c_str() + 9);
}

// A deterministic stand-in for a trained encoder: the image is made gray,
// resized to 8x8, and bit i is set when pixel i is >= 128. Four classes:
// black (all 0), white (all 1), top half white, bottom half white.
class FakeEncoder : public Encoder {
 public:
  FakeEncoder() : codebook_(MakeCodebook()) {}

  static Codebook MakeCodebook() {
    std::vector<uint8_t> codes(4 * 8, 0);
    for (int i = 0; i < 8; ++i) {
      codes[8 + i] = 0xFF;
      codes[16 + i] = i < 4 ? 0xFF : 0x00;
      codes[24 + i] = i < 4 ? 0x00 : 0xFF;
    }
    auto cb = Codebook::Create(64, std::move(codes), {"black", "white", "top", "bottom"});
    EXPECT_TRUE(cb.ok());
    return std::move(cb).value();
  }

  Status Save(const std::string&) const override { return Status::NotSupported("fake"); }
  int bits() const override { return 64; }
  const Codebook& codebook() const override { return codebook_; }
  const PreprocessConfig& preprocess() const override { return pre_; }
  std::string method() const override { return "llc"; }
  uint32_t ood_radius() const override { return 4; }
  float snap_margin() const override { return 0; }

  StatusOr<std::vector<EncodedImage>> Encode(const std::vector<Image>& images) const override {
    std::vector<EncodedImage> out;
    for (const Image& im : images) {
      if (im.empty() || (im.channels != 1 && im.channels != 3)) {
        return Status::InvalidArgument("bad image");
      }
      Image g = ResizeBilinear(ConvertChannels(im, 1), 8, 8);
      if (g.empty()) return Status::InvalidArgument("resize failed");
      EncodedImage e;
      e.code.assign(8, 0);
      e.bit_probs.resize(64);
      for (int i = 0; i < 64; ++i) {
        const bool on = g.pixels[i] >= 128;
        SetBit(e.code.data(), i, on);
        e.bit_probs[i] = on ? 0.9f : 0.1f;
      }
      e.decode = codebook_.Decode(e.code.data(), e.bit_probs.data(), ood_radius());
      e.confidence = 0.9f;
      out.push_back(std::move(e));
    }
    return out;
  }

 private:
  Codebook codebook_;
  PreprocessConfig pre_;
};

// An 8x8 gray image whose pixel i is white when bit i of `code` is set,
// scaled up to size x size, PNG-encoded.
inline std::string PngOfCode(const std::vector<uint8_t>& code, int size = 32) {
  Image im;
  im.width = im.height = size;
  im.channels = 1;
  im.pixels.resize(static_cast<size_t>(size) * size);
  for (int y = 0; y < size; ++y) {
    for (int x = 0; x < size; ++x) {
      const int bit = (y * 8 / size) * 8 + (x * 8 / size);
      im.pixels[static_cast<size_t>(y) * size + x] = GetBit(code.data(), bit) ? 255 : 0;
    }
  }
  auto png = EncodePng(im);
  EXPECT_TRUE(png.ok());
  return std::string(png->begin(), png->end());
}

inline std::vector<uint8_t> RandomCode(std::mt19937_64& rng, int bits) {
  std::vector<uint8_t> c(code_bytes(bits), 0);
  for (int i = 0; i < bits; ++i) SetBit(c.data(), i, rng() & 1);
  return c;
}

// A store, a service and a server on an ephemeral port.
class ServerHarness {
 public:
  explicit ServerHarness(const std::string& dir, ServiceOptions so = {}, ServerOptions o = {},
                         bool load = true) {
    auto store = CodeStore::Open(dir);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    if (!so.encoder_loader) {
      // Any file whose name starts with "fake" loads as the fake encoder.
      so.encoder_loader = [](const std::string& path) -> StatusOr<std::shared_ptr<const Encoder>> {
        const std::string file = path.substr(path.find_last_of('/') + 1);
        if (file.rfind("fake", 0) != 0) return Status::NotFound("no encoder artifact at " + path);
        return std::shared_ptr<const Encoder>(std::make_shared<FakeEncoder>());
      };
    }
    if (so.models_dir.empty()) {
      // The models directory beside the store: fake-model and fake-m.
      so.models_dir = models_dir_ = dir + ".models";
      std::filesystem::create_directories(so.models_dir);
      for (const char* f : {"fake-model", "fake-m"}) {
        std::ofstream(so.models_dir + "/" + f) << "fake";
      }
    }
    so.rebuild_delay = std::chrono::milliseconds(20);
    o.port = 0;
    o.has_api_key = !so.admin_key.empty() || !so.read_key.empty();
    service_ = std::make_unique<Service>(store_.get(), std::move(so));
    server_ = std::make_unique<HttpServer>(service_.get(), o);
    Status s = server_->Start();
    EXPECT_TRUE(s.ok()) << s.ToString();
    if (load) Load();
  }
  ~ServerHarness() {
    server_.reset();
    service_.reset();
    std::error_code ec;
    if (!models_dir_.empty()) std::filesystem::remove_all(models_dir_, ec);
  }
  void Load() {
    Status s = service_->LoadCollections();
    EXPECT_TRUE(s.ok()) << s.ToString();
  }

  uint16_t port() const { return server_->port(); }
  CodeStore* store() { return store_.get(); }
  Service* service() { return service_.get(); }
  HttpServer* server() { return server_.get(); }

 private:
  std::unique_ptr<CodeStore> store_;
  std::unique_ptr<Service> service_;
  std::unique_ptr<HttpServer> server_;
  std::string models_dir_;  // made by the harness, removed with it
};

}  // namespace hamdb::http::testing
