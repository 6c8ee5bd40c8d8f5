// logquant_llama2: generate text with a llama2.c checkpoint and a logquant KV cache, or compare
// cache policies against full precision (--compare). The model code is in model.hpp; this file
// only parses flags and prints.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "checkpoint.hpp"
#include "compare.hpp"
#include "model.hpp"
#include "policy.hpp"
#include "tokenizer.hpp"

namespace {

const char* kUsage =
    "usage: logquant_llama2 MODEL.bin TOKENIZER.bin [options]\n"
    "generation:\n"
    "  --policy P        full | logquant:W | logstep:W,STEP | kivi:R | sink:S,R\n"
    "                    then optionally +rot (rotate channels), +bK/V (bits), +gN (key group)\n"
    "                    (default full)\n"
    "  --bits K/V        key/value bits of quantized tokens: 2, 4 or 8 (default 2/2)\n"
    "  --key-group N     positions per key group, a multiple of 16 (default: the library's)\n"
    "  --rotate          Hadamard-rotate cached channels (CacheConfig::rotate)\n"
    "  --prompt TEXT     text to start from (default: none, BOS only)\n"
    "  --steps N         positions to run, prompt included (default 256, at most seq_len)\n"
    "  --temperature T   0 = greedy (default 1)\n"
    "  --seed S          sampling seed (default 42)\n"
    "comparison (--compare):\n"
    "  --budgets B,B...  full-precision budgets (default 48,96)\n"
    "  --rows \"P P...\"  compare these policies (space-separated) instead of the budget rows;\n"
    "                    paired differences are against the first\n"
    "  --sequences N     sampled sequences (default 16)\n"
    "  --length L        tokens per sequence, BOS included (default 512)\n"
    "  --seed S          sequence i is sampled with seed S + i (default 1)\n"
    "  --bits, --key-group  as above; --temperature sets the sampling temperature (default 1)\n";

std::size_t parse_size(const std::string& flag, const std::string& v) {
  return llama2::detail::parse_count(v, flag);
}

float parse_float(const std::string& flag, const std::string& v) {
  std::size_t used = 0;
  float f = 0;
  try {
    f = std::stof(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != v.size()) throw std::invalid_argument(flag + " " + v + ": not a number");
  return f;
}

std::uint64_t parse_seed(const std::string& v) {
  std::size_t used = 0;
  std::uint64_t s = 0;
  try {
    s = std::stoull(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != v.size() || v[0] == '-')
    throw std::invalid_argument("--seed " + v + ": not a non-negative integer");
  return s;
}

// Prints a piece, dropping lone control bytes other than whitespace (as llama2.c does).
void print_piece(const std::string& piece) {
  if (piece.size() == 1) {
    const unsigned char c = static_cast<unsigned char>(piece[0]);
    if (c < 0x20 && c != '\n' && c != '\t' && c != '\r') return;
  }
  std::fwrite(piece.data(), 1, piece.size(), stdout);
  std::fflush(stdout);
}

int run_generation(const llama2::Checkpoint& model, const llama2::Tokenizer& tok,
             const llama2::Policy& policy, const std::string& prompt, std::size_t steps,
             float temperature, std::uint64_t seed) {
  llama2::Session session(model, policy);
  llama2::Sampler sampler(temperature, seed);
  const std::vector<int> prompt_tokens = tok.encode(prompt, /*bos=*/true, /*eos=*/false);
  const auto start = std::chrono::steady_clock::now();
  llama2::generate(session, sampler, prompt_tokens, steps,
                   [&](int prev, int next) { print_piece(tok.decode(prev, next)); });
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  std::printf("\n");
  std::fflush(stdout);

  const std::size_t n = session.position();
  logquant::MemoryReport mem;
  for (std::size_t l = 0; l < session.layers(); ++l) {
    const logquant::MemoryReport r = session.cache(l).memory();
    mem.code_bytes += r.code_bytes;
    mem.metadata_bytes += r.metadata_bytes;
    mem.full_precision_bytes += r.full_precision_bytes;
    mem.index_bytes += r.index_bytes;
  }
  const logquant::MemoryReport layer0 = session.cache(0).memory();
  std::fprintf(stderr, "policy %s, keys/values %u/%u bits, kernels %s\n", policy.name().c_str(),
               policy.key_bits, policy.value_bits, logquant::isa_name(session.cache(0).isa()));
  std::fprintf(stderr, "%zu tokens in %.3f s: %.1f tokens/s (prefill included)\n", n, seconds,
               static_cast<double>(n) / seconds);
  std::fprintf(stderr,
               "KV cache: %zu bytes (%zu full-precision + %zu quantized tokens per layer; codes %zu, "
               "metadata %zu, fp32 %zu, index %zu) vs %zu bytes for fp32 keys and values (%.1f%%)\n",
               mem.total(), layer0.full_precision_tokens, layer0.quantized_tokens, mem.code_bytes,
               mem.metadata_bytes, mem.full_precision_bytes, mem.index_bytes,
               session.fp32_cache_bytes(),
               100.0 * static_cast<double>(mem.total()) / static_cast<double>(session.fp32_cache_bytes()));
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    std::vector<std::string> positional;
    llama2::Policy policy;
    llama2::CompareOptions cmp;
    std::string prompt, bits = "2/2";
    std::size_t steps = 256;
    float temperature = 1.0f;
    std::uint64_t seed = 0;
    bool have_seed = false, compare = false, rotate = false;
    std::size_t key_group = 0;  // 0: the library's default
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      auto value = [&]() -> std::string {
        if (i + 1 >= argc) throw std::invalid_argument(a + " needs a value");
        return argv[++i];
      };
      if (a == "--policy") {
        policy = llama2::parse_policy(value());
      } else if (a == "--bits") {
        bits = value();
      } else if (a == "--prompt") {
        prompt = value();
      } else if (a == "--steps") {
        steps = parse_size(a, value());
      } else if (a == "--temperature") {
        temperature = parse_float(a, value());
      } else if (a == "--seed") {
        seed = parse_seed(value());
        have_seed = true;
      } else if (a == "--rotate") {
        rotate = true;
      } else if (a == "--key-group") {
        key_group = parse_size(a, value());
      } else if (a == "--rows") {
        const std::string list = value();
        for (std::size_t p = 0; p < list.size();) {
          const std::size_t q = std::min(list.find(' ', p), list.size());
          if (q > p) cmp.rows.push_back(llama2::parse_policy(list.substr(p, q - p)));
          p = q + 1;
        }
      } else if (a == "--compare") {
        compare = true;
      } else if (a == "--budgets") {
        cmp.budgets.clear();
        std::string list = value();
        for (std::size_t p = 0; p <= list.size();) {
          const std::size_t q = std::min(list.find(',', p), list.size());
          cmp.budgets.push_back(parse_size(a, list.substr(p, q - p)));
          p = q + 1;
        }
      } else if (a == "--sequences") {
        cmp.sequences = parse_size(a, value());
      } else if (a == "--length") {
        cmp.length = parse_size(a, value());
      } else if (a == "-h" || a == "--help") {
        std::fputs(kUsage, stdout);
        return 0;
      } else if (!a.empty() && a[0] == '-') {
        throw std::invalid_argument("unknown option " + a);
      } else {
        positional.push_back(a);
      }
    }
    if (positional.size() != 2) {
      std::fputs(kUsage, stderr);
      return 2;
    }
    llama2::parse_bits(bits, policy);
    policy.rotate = policy.rotate || rotate;
    if (key_group != 0 && !policy.own_group) policy.key_group = key_group;

    const llama2::Checkpoint model = llama2::load_checkpoint(positional[0]);
    const llama2::Tokenizer tok = llama2::load_tokenizer(positional[1], model.config.vocab_size);
    const llama2::Config& c = model.config;
    std::fprintf(stderr,
                 "model: dim %d, hidden %d, %d layers, %d/%d heads (head_dim %d), vocab %d, "
                 "seq_len %d\n",
                 c.dim, c.hidden_dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim(),
                 c.vocab_size, c.seq_len);

    if (compare) {
      cmp.key_bits = policy.key_bits;
      cmp.value_bits = policy.value_bits;
      cmp.rotate = rotate;
      if (key_group != 0) cmp.key_group = key_group;
      cmp.temperature = temperature;
      if (have_seed) cmp.seed = seed;
      const auto start = std::chrono::steady_clock::now();
      const llama2::CompareResult res = llama2::run_compare(model, cmp, [&](std::size_t done) {
        std::fprintf(stderr, "\rsequence %zu/%zu", done, cmp.sequences);
      });
      const double seconds =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      std::fprintf(stderr, "\rcompared %zu policies on %zu sequences in %.1f s\n", res.rows.size(),
                   cmp.sequences, seconds);
      std::fputs(llama2::format_report(cmp, res).c_str(), stdout);
      return 0;
    }

    if (steps > static_cast<std::size_t>(c.seq_len)) steps = static_cast<std::size_t>(c.seq_len);
    return run_generation(model, tok, policy, prompt, steps, temperature, have_seed ? seed : 42);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
