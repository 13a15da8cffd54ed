#include "tools/progress.h"

#include <unistd.h>

#include <cstdio>

namespace hamdb::tools {

Progress::Progress(std::string label, uint64_t total, std::string unit, bool force)
    : label_(std::move(label)),
      unit_(std::move(unit)),
      total_(total),
      enabled_(force || isatty(STDERR_FILENO)),
      start_(std::chrono::steady_clock::now()),
      last_draw_(start_) {}

Progress::~Progress() { Finish(); }

double Progress::elapsed_seconds() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
}

void Progress::Add(uint64_t n) {
  done_.fetch_add(n);
  if (!enabled_) return;
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  if (now - last_draw_ < std::chrono::milliseconds(200)) return;
  last_draw_ = now;
  Draw(false);
}

void Progress::SetNote(std::string note) {
  std::lock_guard<std::mutex> lock(mu_);
  note_ = std::move(note);
}

void Progress::Finish() {
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_ || !enabled_) return;
  finished_ = true;
  Draw(true);
}

void Progress::Draw(bool final) {
  const double secs = elapsed_seconds();
  const uint64_t done = done_.load();
  const double rate = secs > 0 ? done / secs : 0;
  char eta[32] = "";
  if (total_ > 0 && rate > 0 && done < total_) {
    const double left = (total_ - done) / rate;
    std::snprintf(eta, sizeof eta, " ETA %dm%02ds", static_cast<int>(left) / 60,
                  static_cast<int>(left) % 60);
  }
  if (total_ > 0) {
    std::fprintf(stderr, "\r%s: %llu/%llu %s (%.1f%%) %.0f %s/s%s%s%s   ", label_.c_str(),
                 static_cast<unsigned long long>(done), static_cast<unsigned long long>(total_),
                 unit_.c_str(), 100.0 * done / total_, rate, unit_.c_str(), eta,
                 note_.empty() ? "" : ", ", note_.c_str());
  } else {
    std::fprintf(stderr, "\r%s: %llu %s %.0f %s/s   ", label_.c_str(),
                 static_cast<unsigned long long>(done), unit_.c_str(), rate, unit_.c_str());
  }
  if (final) std::fprintf(stderr, " in %.1fs\n", secs);
  std::fflush(stderr);
}

}  // namespace hamdb::tools
