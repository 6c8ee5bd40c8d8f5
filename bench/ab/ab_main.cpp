// A/B of two versions of the attention kernels in one process (scripts/ab_kernel.sh): calls
// alternate between the two (which goes first alternates too), so both see the same moments of a
// noisy host, and the report is the ratio of their time quantiles. On the shared 2-core guest
// where the separate benchmark runs moved 10-30% from run to run, two identical builds compared
// this way agreed within ~2% (L2) and ~3% (cold, medians).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <vector>

void* ab_setup_new(bool, std::size_t, const char*);
void ab_call_new(void*, std::size_t);
const std::vector<float>& ab_out_new(void*);
std::size_t ab_layers_new(void*);
void* ab_setup_base(bool, std::size_t, const char*);
void ab_call_base(void*, std::size_t);
const std::vector<float>& ab_out_base(void*);
std::size_t ab_layers_base(void*);

namespace {

double quantile(std::vector<double> v, double q) {
  std::sort(v.begin(), v.end());
  return v[static_cast<std::size_t>(q * static_cast<double>(v.size() - 1))];
}

int usage() {
  std::fprintf(stderr, "usage: logquant_ab l2|cold [ctx] [calls] [isa | new_isa:base_isa]\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) return usage();
  const std::string mode = argv[1];
  if (mode != "l2" && mode != "cold") return usage();
  const bool l2 = mode == "l2";
  const std::size_t ctx = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : (l2 ? 4096 : 16384);
  const std::size_t calls = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : (l2 ? 5000 : 800);
  // ISA, or NEW:BASE for two ISAs of one revision (e.g. avxvnni:avx2 with REV = HEAD).
  const std::string isa_arg = argc > 4 ? argv[4] : "avx512";
  const std::size_t colon = isa_arg.find(':');
  const std::string isa_new = isa_arg.substr(0, colon);
  const std::string isa_base = colon == std::string::npos ? isa_new : isa_arg.substr(colon + 1);
  const char* isa = isa_arg.c_str();
  if (ctx == 0 || calls == 0) return usage();

  void* base = nullptr;
  void* next = nullptr;
  try {
    base = ab_setup_base(l2, ctx, isa_base.c_str());
    next = ab_setup_new(l2, ctx, isa_new.c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "logquant_ab: %s\n", e.what());
    return 2;
  }
  ab_call_base(base, 0);
  ab_call_new(next, 0);
  double diff = 0.0, range = 0.0;
  for (std::size_t i = 0; i < ab_out_base(base).size(); ++i) {
    diff = std::max(diff, double(std::fabs(ab_out_base(base)[i] - ab_out_new(next)[i])));
    range = std::max(range, double(std::fabs(ab_out_base(base)[i])));
  }

  std::vector<double> tb, tn;
  for (std::size_t i = 0; i < calls; ++i)
    for (int k = 0; k < 2; ++k) {
      const bool use_base = ((i + k) & 1) == 0;
      const auto t0 = std::chrono::steady_clock::now();
      if (use_base)
        ab_call_base(base, i);
      else
        ab_call_new(next, i);
      const double us =
          std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count();
      (use_base ? tb : tn).push_back(us);
    }
  std::printf("%s, %zu tokens, %s, %zu layer(s), %zu calls each (us per call)\n", mode.c_str(), ctx,
              isa, ab_layers_base(base), calls);
  std::printf("%-8s %10s %10s %10s %10s\n", "", "min", "p10", "p25", "median");
  std::printf("%-8s %10.1f %10.1f %10.1f %10.1f\n", "base", quantile(tb, 0), quantile(tb, 0.1),
              quantile(tb, 0.25), quantile(tb, 0.5));
  std::printf("%-8s %10.1f %10.1f %10.1f %10.1f\n", "new", quantile(tn, 0), quantile(tn, 0.1),
              quantile(tn, 0.25), quantile(tn, 0.5));
  std::printf("%-8s %10.3f %10.3f %10.3f %10.3f\n", "new/base", quantile(tn, 0) / quantile(tb, 0),
              quantile(tn, 0.1) / quantile(tb, 0.1), quantile(tn, 0.25) / quantile(tb, 0.25),
              quantile(tn, 0.5) / quantile(tb, 0.5));
  std::printf("largest output difference: %.3g (largest |output| %.3g)\n", diff, range);
  return 0;
}
