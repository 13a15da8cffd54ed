// Progress reporting for long-running commands: a single status line with
// count, rate and ETA, redrawn at most every 200 ms, on stderr, and only when
// stderr is a terminal (or when forced, e.g. for logs).
//
// Thread safety: Add() may be called from several threads.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>

namespace hamdb::tools {

class Progress {
 public:
  // total == 0 means unknown (no ETA). `unit` names what is counted.
  Progress(std::string label, uint64_t total, std::string unit, bool force = false);
  ~Progress();  // prints the final line

  void Add(uint64_t n);
  // Extra text drawn after the rate and ETA (for example "3 failed").
  void SetNote(std::string note);
  uint64_t done() const { return done_.load(); }
  double elapsed_seconds() const;
  void Finish();

 private:
  void Draw(bool final);

  std::string label_, unit_, note_;  // note_ guarded by mu_
  uint64_t total_;
  bool enabled_;
  bool finished_ = false;
  std::atomic<uint64_t> done_{0};
  std::chrono::steady_clock::time_point start_, last_draw_;
  std::mutex mu_;
};

}  // namespace hamdb::tools
