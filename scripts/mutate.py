#!/usr/bin/env python3
"""Mutation check: applies one-line mutations, one at a time, to a scratch copy of this tree and
reports which ones no test catches (docs/testing.md). Not part of CI: it rebuilds the tests once
per mutation (about 2-3 minutes each on 2 cores).

Usage: python3 scripts/mutate.py [--isas scalar,avx2,avxvnni,avx512] [--aarch64] [--only NAME ...]
                                 [--scratch DIR]

For each mutation and each ISA it runs the test suite as a host with only that ISA would: the
cache uses that kernel set (LOGQUANT_ISA) and only the scalar and that ISA's kernel-test instances
run; scalar runs the scalar-only build (LOGQUANT_SCALAR_ONLY, as .ci/run's stage). --aarch64 adds the NEON suite, cross-built as the aarch64-neon preset does and run under
qemu-aarch64 (.ci/run's aarch64 stage installs what it needs). A mutation is caught on an ISA when
at least one test fails there; the report ends with a table and the exit status is 1 if any
mutation survives on any ISA. Standard library only; needs cmake, a C++ compiler and the test
dependencies (scripts/test.sh installs them)."""

import argparse
import os
import shutil
import subprocess
import sys
import time

# (name, file, original line (exact, stripped), mutated line, what it models)
MUTATIONS = [
    ("attend-partial-end-unchecked", "include/logquant/kv_cache.hpp",
     "detail::require(aligned(begin) && aligned(end), [&] {",
     "detail::require(aligned(begin), [&] {",
     "attend_partial accepts an end inside a value tile"),
    ("8-bit-codes-as-7", "include/logquant/quant/tile_layout.hpp",
     "tile[s.byte] = static_cast<std::uint8_t>(tile[s.byte] | (code << s.shift));",
     "tile[s.byte] = static_cast<std::uint8_t>(tile[s.byte] | "
     "((bits == 8 ? code & 0x7f : code) << s.shift));",
     "8-bit codes silently truncated to 7 bits when packed"),
    ("2-bit-range-as-1-bit", "include/logquant/quant/group_quantizer.hpp",
     "static constexpr unsigned kMaxCode = (1u << Bits) - 1u;",
     "static constexpr unsigned kMaxCode = Bits == 2 ? 1u : (1u << Bits) - 1u;",
     "the 2-bit quantizer uses codes 0..1 only"),
    ("one-digit-operands", "include/logquant/kernels/common.hpp",
     "inline constexpr unsigned operand_digits(unsigned bits) { return bits == 2 ? 1u : 2u; }",
     "inline constexpr unsigned operand_digits(unsigned bits) { return bits == 2 ? 1u : 1u; }",
     "4/8-bit attention with one int8 digit per operand (too coarse for those codes)"),
    ("sink-overflow-unchecked", "include/logquant/selector/sink_selector.hpp",
     "detail::require(sink <= std::numeric_limits<std::size_t>::max() - recent, [&] {",
     "detail::require(true, [&] {",
     "SinkSelector accepts sink + recent that wraps around"),
]

ALL_ISAS = ["scalar", "avx2", "avxvnni", "avx512", "neon", "neon_dotprod"]


def run(cmd, cwd, env=None, log=None):
    return subprocess.run(cmd, cwd=cwd, env=env, stdout=log or subprocess.DEVNULL,
                          stderr=subprocess.STDOUT).returncode


def copy_tree(src, dst):
    """The working tree as git sees it (tracked and untracked, not ignored), without build/."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=src,
                           check=True, capture_output=True).stdout.decode().split("\0")
    if os.path.exists(dst):
        shutil.rmtree(dst)
    for f in filter(None, files):
        if not os.path.exists(os.path.join(src, f)):
            continue  # deleted in the working tree
        os.makedirs(os.path.dirname(os.path.join(dst, f)) or dst, exist_ok=True)
        shutil.copy2(os.path.join(src, f), os.path.join(dst, f))


def apply(path, original, mutated):
    with open(path) as f:
        lines = f.read().split("\n")
    hits = [i for i, l in enumerate(lines) if l.strip() == original]
    if len(hits) != 1:
        raise SystemExit(f"error: {path}: expected exactly one line '{original}', found {len(hits)}")
    i = hits[0]
    indent = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
    saved = list(lines)
    lines[i] = indent + mutated
    with open(path, "w") as f:
        f.write("\n".join(lines))
    return saved


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--isas", default=None,
                    help="comma-separated ISAs to test on (default: every one this host runs)")
    ap.add_argument("--aarch64", action="store_true",
                    help="also the NEON suite: cross build, tests under qemu-aarch64")
    ap.add_argument("--only", nargs="*", default=None, help="mutation names to run")
    ap.add_argument("--scratch", default="build/mutants")
    args = ap.parse_args()
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    scratch = os.path.abspath(os.path.join(root, args.scratch))
    src = os.path.join(scratch, "src")
    # Where each ISA's suite is built: scalar as the scalar-only build (no SIMD table exists, as on
    # a host without them, so no test can compare against another table), NEON cross-built.
    aarch64 = os.path.join(scratch, "build-aarch64")
    build_of = {"scalar": os.path.join(scratch, "build-scalar-only"),
                "neon": aarch64, "neon_dotprod": aarch64}
    host = os.path.join(scratch, "build")
    jobs = str(os.cpu_count() or 2)

    copy_tree(root, src)
    if args.isas:
        isas = args.isas.split(",")
    else:
        helper = os.path.join(scratch, "supported_isas")
        if run(["c++", "-std=c++17", "-O0", "-I" + os.path.join(src, "include"),
                os.path.join(src, "scripts", "supported_isas.cpp"), "-o", helper], root):
            raise SystemExit("error: cannot compile scripts/supported_isas.cpp")
        isas = subprocess.run([helper], check=True, capture_output=True,
                              text=True).stdout.strip().split(",")
        if args.aarch64:
            isas += ["neon", "neon_dotprod"]
    common = ["-DCMAKE_BUILD_TYPE=RelWithDebInfo", "-DLOGQUANT_BUILD_BENCHMARKS=OFF",
              "-DLOGQUANT_BUILD_EXAMPLES=OFF"]
    cross = ["--toolchain", os.path.join(src, "cmake/toolchains/aarch64-linux-gnu.cmake")]
    extra_of = {"scalar": ["-DLOGQUANT_SCALAR_ONLY=ON"], "neon": cross, "neon_dotprod": cross}
    builds = []
    for isa in isas:
        entry = (build_of.get(isa, host), extra_of.get(isa, []))
        if entry not in builds:
            builds.append(entry)
    for directory, extra in builds:
        os.makedirs(directory, exist_ok=True)
        print(f"==> configure and build the unmutated tests in {directory}", flush=True)
        if run(["cmake", "-S", src, "-B", directory] + common + extra, root) or \
                run(["cmake", "--build", directory, "--parallel", jobs], root):
            raise SystemExit(f"error: the unmutated tree does not build in {directory}")

    def build_all(log=None):
        return all(run(["cmake", "--build", d, "--parallel", jobs], root, log=log) == 0
                   for d, _ in builds)

    print("==> ISAs: " + ", ".join(isas), flush=True)

    def suite_fails(isa, log):
        """Runs the suite as a host with only `isa` would; True when a test fails."""
        others = [i for i in ALL_ISAS if i not in ("scalar", isa)]
        exclude = r"package_|odr|_needs?_|/(" + "|".join(others) + r")( |$)"
        env = dict(os.environ, LOGQUANT_ISA=isa, LOGQUANT_TEST_REQUIRE="")
        directory = build_of.get(isa, host)
        return run(["ctest", "--test-dir", directory, "--parallel", jobs, "-E", exclude,
                    "--stop-on-failure"], root, env, log) != 0

    for isa in isas:
        with open(os.path.join(scratch, f"baseline-{isa}.log"), "w") as log:
            if suite_fails(isa, log):
                raise SystemExit(f"error: the unmutated suite fails on {isa} (see {log.name})")
    print("==> the unmutated suite passes on every ISA", flush=True)

    chosen = [m for m in MUTATIONS if args.only is None or m[0] in args.only]
    results = []
    for name, rel, original, mutated, what in chosen:
        path = os.path.join(src, rel)
        saved = apply(path, original, mutated)
        start = time.time()
        try:
            log_path = os.path.join(scratch, f"{name}.log")
            with open(log_path, "w") as log:
                if not build_all(log):
                    caught = {isa: "build fails" for isa in isas}
                else:
                    caught = {isa: "caught" if suite_fails(isa, log) else "SURVIVES"
                              for isa in isas}
        finally:
            with open(path, "w") as f:
                f.write("\n".join(saved))
        results.append((name, what, caught))
        print(f"{name}: " + ", ".join(f"{i} {c}" for i, c in caught.items()) +
              f" ({time.time() - start:.0f} s; log {log_path})", flush=True)
    # Rebuild unmutated so the scratch builds match the tree again for the next run.
    build_all()

    print("\n| mutation | what it models | " + " | ".join(isas) + " |")
    print("|---|---|" + "---|" * len(isas))
    for name, what, caught in results:
        print(f"| {name} | {what} | " + " | ".join(caught[i] for i in isas) + " |")
    survivors = [r for r in results if "SURVIVES" in r[2].values()]
    print(f"\n{len(results) - len(survivors)} of {len(results)} mutations caught on every ISA")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
