#!/usr/bin/env python3
"""Turns a logquant_bench JSON file (Google Benchmark, --benchmark_format=json with repetitions)
into docs/bench/report.md (medians, ratios against the fp16 and fp32 baselines of the same run,
the issue-5 targets) and a gnuplot plot of decode time against context length.

Usage: bench_report.py RESULTS.json OUT_DIR [--command "..."]
Standard library only; the plot needs gnuplot (scripts/bench_report.sh installs it)."""

import argparse
import datetime
import json
import os
import platform
import re
import subprocess
import sys

CTXS = [1024, 4096, 16384, 65536]
KIND_ORDER = ["fp32", "fp16", "full-kvcache", "logquant2-w42", "logquant2-w48", "kivi2-r128",
              "logquant4-w42", "accurate-k4v2"]
KIND_LABEL = {
    "fp32": "fp32 dense (baseline)",
    "fp16": "fp16 dense (baseline)",
    "full-kvcache": "KVCache<FullSelector> (fp32)",
    "logquant2-w42": "LogQuant 2-bit, W=42",
    "logquant2-w48": "LogQuant 2-bit, W=48",
    "kivi2-r128": "KIVI 2-bit, R=128",
    "logquant4-w42": "LogQuant 4-bit, W=42",
    "accurate-k4v2": "presets::accurate (4-bit keys, 2-bit values, 128 FP)",
}


def parse_name(run_name):
    """'attend/shape:x/ctx:1024/.../real_time' -> ('attend', {'shape': 'x', 'ctx': '1024', ...})."""
    path, fields = [], {}
    for part in run_name.split("/"):
        if ":" in part:
            k, v = part.split(":", 1)
            fields[k] = v
        elif part not in ("real_time", "manual_time"):
            path.append(part)
    return "/".join(path), fields


def load(path):
    with open(path) as f:
        data = json.load(f)
    rows = []
    for b in data["benchmarks"]:
        agg = b.get("aggregate_name", "")
        if b.get("run_type") == "aggregate" and agg != "median":
            continue
        if b.get("run_type") == "iteration" and b.get("repetitions", 1) > 1:
            continue  # one repetition of several (a run without aggregates_only): use the median
        kind, fields = parse_name(b.get("run_name", b["name"]))
        scale = {"ns": 1e-9, "us": 1e-6, "ms": 1e-3, "s": 1.0}[b.get("time_unit", "ns")]
        row = dict(fields)
        row["bench"] = kind
        row["seconds"] = b["real_time"] * scale
        row["reps"] = b.get("repetitions", 1)
        for key in ("bytes_per_second", "items_per_second", "MB_read", "bits_per_value",
                    "qbits_per_value", "layers", "demoted_per_token", "demoted_per_step", "cycle",
                    "t1_us", "t2_us", "speedup", "fp_tokens", "GBps", "sum_GBps", "of_sum",
                    "s_per_token_head"):
            if key in b:
                row[key] = b[key]
        rows.append(row)
    return data.get("context", {}), rows


def find(rows, bench, **fields):
    for r in rows:
        if r["bench"] == bench and all(r.get(k) == str(v) for k, v in fields.items()):
            return r
    return None


def us(seconds):
    v = seconds * 1e6
    return f"{v:,.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.2f}"


def ratio(a, b):
    return f"{a / b:.2f}×" if a and b else "–"


def machine():
    info = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        for line in out.splitlines():
            k, _, v = line.partition(":")
            info[k.strip()] = v.strip()
    except OSError:
        pass
    mem = ""
    try:
        with open("/proc/meminfo") as f:
            kib = int(f.readline().split()[1])
            mem = f"{kib / 2**20:.0f} GiB RAM"
    except OSError:
        pass
    return (f"{info.get('Model name', platform.processor())}, {info.get('CPU(s)', '?')} cores, "
            f"{'L3 ' + info['L3 cache'] if 'L3 cache' in info else 'L3 size not reported by lscpu'}"
            f", {mem}")


def write_quantize(w, rows):
    """The quantize / pack section (only when the run has those benchmarks)."""
    w("## Quantize + pack, pack, unpack (head dim 128)\n")
    w("*keys*: one key group (per-channel (scale, min) over the group's tokens, codes into tiles); "
      "*values*: 16 tokens (per-token groups of 64 channels). Rates count float inputs (quantize) "
      "or packed bytes (pack/unpack).\n")
    w("| operation | bits | ISA | size | µs per call | GB/s | Mvalues/s |")
    w("|---|---|---|---|---|---|---|")
    for r in rows:
        size = (f"{r['tokens']} tokens" if "tokens" in r else f"{r.get('rows', '?')} rows") + \
               f" × {r.get('dim', '?')}"
        w(f"| {r['bench']} | {r['bits']} | {r['isa']} | {size} | {us(r['seconds'])} | "
          f"{r['bytes_per_second'] / 1e9:.2f} | {r['items_per_second'] / 1e6:.0f} |")
    w("")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("results")
    ap.add_argument("out_dir")
    ap.add_argument("--command", default="bash scripts/bench_report.sh")
    ap.add_argument("--load", default="")
    args = ap.parse_args()
    ctx_info, rows = load(args.results)
    os.makedirs(args.out_dir, exist_ok=True)

    isas = [i for i in ctx_info.get("logquant_isas", "scalar").split(",") if i]
    best = isas[0]
    base_isa = ctx_info.get("baseline_isa", "avx512")
    attend_isas = [i for i in isas if find(rows, "attend", isa=i, ctx=16384, threads=1)]
    bw1 = find(rows, "dram/read", threads=1)
    bw2 = find(rows, "dram/read", threads=2)
    bw = {1: bw1["bytes_per_second"] if bw1 else None, 2: bw2["bytes_per_second"] if bw2 else None}

    def attend(shape, kind, ctx, threads=1, isa=None, via=None):
        f = dict(shape=shape, cache=kind, ctx=ctx, threads=threads)
        f["isa"] = base_isa if kind in ("fp32", "fp16") else (isa or best)
        if threads > 1:
            f["via"] = via or "pool"
        return find(rows, "attend", **f)

    md = []
    w = md.append
    date = ctx_info.get("date", datetime.datetime.now().isoformat())
    w("# logquant benchmark report\n")
    w(f"- Command: `{args.command}`")
    w(f"- Date: {date}")
    w(f"- Machine: {machine()}")
    if "llc_bytes" in ctx_info:
        w(f"- Cold data sets sized for an L3 of {int(ctx_info['llc_bytes']) / 2**20:.0f} MiB "
          "(LOGQUANT_BENCH_LLC_MIB, else sysfs, else sysconf): at least 3× that per benchmark")
    if args.load:
        w(f"- Load average just before the run (1, 5, 15 min): {args.load}")
    w(f"- logquant ISAs on this CPU (best first): {', '.join(isas)}; dense baselines: {base_isa}")
    reps = max((r["reps"] for r in rows), default=1)
    w(f"- Every number is the median of {reps} repetitions of one Google Benchmark run; ratios "
      "compare numbers of this same run.")
    if bw[1]:
        w(f"- DRAM read bandwidth (sum over a buffer 4× the L3): **{bw[1] / 1e9:.1f} GB/s** on one "
          f"thread, **{(bw[2] or 0) / 1e9:.1f} GB/s** on two.")
    dp, fm = find(rows, "core/vpdpbusd-zmm"), find(rows, "core/vfmadd-zmm")
    if dp and fm:
        w(f"- One core issues **{dp['items_per_second'] / 1e9:.2f} G vpdpbusd/s** (zmm: 64 int8 "
          f"multiply-adds each) and **{fm['items_per_second'] / 1e9:.2f} G vfmadd/s** (zmm: 16 fp32 "
          "each), on 12 independent accumulators.")
    beside = [(name, find(rows, f"core/vpdpbusd-zmm+{name}"))
              for name in ("vfmadd", "vaddps", "vcvtdq2ps", "store-zmm")]
    if dp and all(r for _, r in beside):
        w("- With one other instruction beside every vpdpbusd: " +
          ", ".join(f"{name} {r['items_per_second'] / 1e9:.2f}" for name, r in beside) +
          " G vpdpbusd/s (`core/vpdpbusd-zmm+...`): which instructions take the dot products' pipes.")
    l2 = find(rows, "attend-l2", ctx=4096, isa=best)
    if l2:
        w(f"- LogQuant 2-bit W=42 with its data in L2 (one KV head, 4 query heads, 4K tokens, {best}): "
          f"**{l2['seconds'] / 4096 * 1e9:.1f} ns** per token and KV head.")
    def of_own_roofline(r):  # time / (the bytes it streams at the one-thread sum-loop rate)
        return r["seconds"] / (r["MB_read"] * 1e6 / bw[1])

    fl = find(rows, "attend-floor", shape="llama3-8b", ctx=16384, isa=best)
    if fl and bw[1]:
        w(f"- Arithmetic floor of the 2-bit format (`attend-floor`: only the 16 vpdpbusd per token "
          f"and KV head with their code-plane extraction, over the same cold LogQuant W=42 layers; "
          f"no softmax): **{us(fl['seconds'])} µs** at 16K, "
          f"{of_own_roofline(fl):.2f}× the DRAM roofline of the "
          f"{fl['MB_read']:.1f} MB it streams.")
    fx = find(rows, "attend-floor-mix", shape="llama3-8b", ctx=16384, isa=best)
    if fx and bw[1]:
        w(f"- The same with the float work the format adds around the dot products, each part at its "
          f"least and in registers (`attend-floor-mix`: query preparation per key group, scores, a "
          f"7-operation exp, weights, float combination; no stores, trees or dependences): "
          f"**{us(fx['seconds'])} µs**, "
          f"{of_own_roofline(fx):.2f}× that roofline.")
    fp = find(rows, "attend-fp-part", shape="llama3-8b", ctx=16384, isa=best)
    if fp and bw[1]:
        w(f"- The full-precision tokens of those layers alone, as the library attends them "
          f"(`attend-fp-part`: {fp['fp_tokens']:.0f} tokens, {fp['MB_read']:.2f} MB): "
          f"**{us(fp['seconds'])} µs**.")
    w("")

    # ---- dense baselines against the memory
    base_rows = [(kind, c, attend("llama3-8b", kind, c)) for kind in ("fp32", "fp16")
                 for c in (16384, 65536)]
    if any(r for _, _, r in base_rows):
        w("## Dense baselines against the DRAM read rate (Llama-3-8B shape, one thread, cold)\n")
        w("*GB/s*: bytes of K and V read per second (the median call). *paired sum loop*: the "
          "plain sum loop over another cold layer of the same data set, timed right after each "
          "attention call (`sum_GBps`), and the baseline's share of it (`of_sum`). *dram/read*: "
          "the one-thread sum-loop benchmark of this run. *L2*: the same kernel on one KV head of "
          "512 tokens held in L2 (`attend-l2/...cache:fp16|fp32`): its arithmetic alone, per "
          "token and KV head, and the rate at which it would consume K and V if memory were "
          "free.\n")
        w("| baseline | ctx | µs | GB/s | paired sum loop GB/s | of the sum loop | dram/read GB/s | "
          "ns per token and KV head | L2: ns per token and KV head | L2: GB/s |")
        w("|---|---|---|---|---|---|---|---|---|---|")
        for kind, c, r in base_rows:
            if not r:
                continue
            l2r = find(rows, "attend-l2", cache=kind, ctx=512, isa=base_isa)
            cells = [us(r["seconds"]),
                     f"{r['GBps']:.1f}" if "GBps" in r else f"{r['bytes_per_second'] / 1e9:.1f}",
                     f"{r['sum_GBps']:.1f}" if "sum_GBps" in r else "–",
                     f"{r['of_sum']:.2f}×" if "of_sum" in r else "–",
                     f"{bw[1] / 1e9:.1f}" if bw[1] else "–",
                     f"{r['seconds'] / (c * 8) * 1e9:.1f}",
                     f"{l2r['s_per_token_head'] * 1e9:.1f}" if l2r and "s_per_token_head" in l2r
                     else "–",
                     f"{l2r['bytes_per_second'] / 1e9:.1f}" if l2r and "bytes_per_second" in l2r
                     else "–"]
            w(f"| {KIND_LABEL[kind]} | {c // 1024}K | " + " | ".join(cells) + " |")
        w("")

    # ---- decode attention tables
    for shape, title in (("llama3-8b", "Llama-3-8B shape (32 query heads, 8 KV heads, head dim 128)"),
                         ("hd64", "head dim 64 (32 query heads, 8 KV heads)")):
        if not attend(shape, "fp16", 16384):
            continue
        w(f"## Decode attention, {title}\n")
        w("One query token against one layer's cache, cold (rotating over enough layers to exceed "
          "the L3), one thread. Time in µs; ×fp16 and ×fp32 are the baseline's time divided by this "
          "cache's (higher is faster); bits/value counts every byte of the cache at 16K.\n")
        head = "| cache | ISA | bits/value | " + " | ".join(f"{c // 1024}K µs" for c in CTXS) + \
               " | " + " | ".join(f"×fp16 {c // 1024}K" for c in CTXS) + \
               " | ×fp32 16K | GB/s 16K | roofline 16K |"
        w(head)
        w("|" + "---|" * (head.count("|") - 1))
        for kind in KIND_ORDER:
            for isa in ([base_isa] if kind in ("fp32", "fp16") else attend_isas):
                cells = []
                r16 = attend(shape, kind, 16384, isa=isa)
                if not r16:
                    continue
                for c in CTXS:
                    r = attend(shape, kind, c, isa=isa)
                    cells.append(us(r["seconds"]) if r else "–")
                for c in CTXS:
                    r, f16 = attend(shape, kind, c, isa=isa), attend(shape, "fp16", c)
                    cells.append(ratio(f16["seconds"], r["seconds"]) if r and f16 else "–")
                f32 = attend(shape, "fp32", 16384)
                cells.append(ratio(f32["seconds"], r16["seconds"]) if f32 else "–")
                gbs = r16["bytes_per_second"] / 1e9
                cells.append(f"{gbs:.1f}")
                roof = (r16["MB_read"] * 1e6 / bw[1]) if bw[1] else None
                cells.append(f"{r16['seconds'] / roof:.2f}× of {us(roof)} µs" if roof else "–")
                w(f"| {KIND_LABEL[kind]} | {isa} | {r16['bits_per_value']:.2f} | " +
                  " | ".join(cells) + " |")
        w("\n*roofline*: this cache's bytes read per call (codes, metadata, full-precision rows) "
          "divided by the one-thread DRAM read bandwidth above; 1.00× would be reading at the "
          "bandwidth of a plain sum loop.\n")

        w(f"### Two threads, {shape}\n")
        w("Speed-up of two threads over one (one thread's time / two threads' time). *pool*: "
          "`attend_parallel` with a caller's pool (here a spinning 2-thread pool, like an engine's "
          "decode pool); *spawn*: `attend_parallel(..., threads)`, which starts std::threads on "
          "every call.\n")
        w("*paired*: the `attend-2t` benchmark, which alternates one-thread and two-thread (pool) "
          "calls on the same data set call by call and divides the medians of the calls, so both "
          "sides see the same moments of a shared machine; the other columns divide two separate "
          "benchmarks' medians, run seconds to minutes apart.\n")
        head = "| cache | ISA | " + " | ".join(f"pool {c // 1024}K" for c in CTXS) + " | " + \
               " | ".join(f"spawn {c // 1024}K" for c in CTXS) + " | paired 16K | paired 64K" + \
               " | 2T µs 16K |"
        w(head)
        w("|" + "---|" * (head.count("|") - 1))
        for kind in KIND_ORDER:
            for isa in ([base_isa] if kind in ("fp32", "fp16") else attend_isas):
                if not attend(shape, kind, 16384, isa=isa):
                    continue
                cells = []
                for via in ("pool", "spawn"):
                    for c in CTXS:
                        one = attend(shape, kind, c, isa=isa)
                        two = attend(shape, kind, c, threads=2, isa=isa, via=via)
                        cells.append(ratio(one["seconds"], two["seconds"]) if one and two else "–")
                for c in (16384, 65536):
                    p = find(rows, "attend-2t", shape=shape, cache=kind, ctx=c, isa=isa)
                    cells.append(f"{p['speedup']:.2f}×" if p else "–")
                two16 = attend(shape, kind, 16384, threads=2, isa=isa)
                cells.append(us(two16["seconds"]) if two16 else "–")
                if all(c == "–" for c in cells):
                    continue  # not in this run (LOGQUANT_BENCH_SET=headline, a filter)
                w(f"| {KIND_LABEL[kind]} | {isa} | " + " | ".join(cells) + " |")
        w("")

    # ---- append
    w("## Appending tokens (Llama-3-8B shape, per layer)\n")
    w("*prefill*: 4096 tokens in one call into a fresh cache. *decode*: one token per call at 4K "
      "context, cold (rotating over layers), averaged over whole demotion cycles "
      "(demoted/token = 1.00 confirms every token was quantized once). *demote*: the single "
      "append that quantizes a block, alone. *% of attention*: decode append time / one decode "
      "attention step at 4K (same cache and ISA, one thread).\n")
    w("| cache | ISA | prefill µs/token | decode µs/token | demoted/token | demote step µs | "
      "% of attention 4K |")
    w("|---|---|---|---|---|---|---|")
    for kind in KIND_ORDER[2:]:
        for isa in isas:
            pre = find(rows, "append/prefill", cache=kind, isa=isa)
            dec = find(rows, "append/decode", cache=kind, isa=isa)
            dem = find(rows, "append/demote", cache=kind, isa=isa)
            if not (pre or dec):
                continue
            att = attend("llama3-8b", kind, 4096, isa=isa)
            cells = [us(pre["seconds"] / 4096) if pre else "–",
                     us(dec["seconds"]) if dec else "–",
                     f"{dec.get('demoted_per_token', 0):.2f}" if dec else "–",
                     us(dem["seconds"]) if dem else "–",
                     f"{100 * dec['seconds'] / att['seconds']:.2f}%" if dec and att else "–"]
            w(f"| {KIND_LABEL[kind]} | {isa} | " + " | ".join(cells) + " |")
    w("")

    # ---- quantize / pack
    quantize_rows = [r for r in rows if r["bench"] in ("quantize/keys", "quantize/values", "pack",
                                                      "unpack")]
    if quantize_rows:
        write_quantize(w, quantize_rows)

    # ---- memory
    w("## Memory (Llama-3-8B shape, 16K context, default value group 64)\n")
    w("*quantized bits/value*: code and metadata bytes of the quantized tokens per quantized key "
      "or value (`MemoryReport::quantized_bits_per_value()`); *bits/value*: every byte of the "
      "cache (full-precision tokens and indexes too) per cached key or value "
      "(`bits_per_value()`).\n")
    w("| cache | quantized bits/value | bits/value | MB per layer read by attention |")
    w("|---|---|---|---|")
    for kind in KIND_ORDER:
        r = attend("llama3-8b", kind, 16384)
        if r:
            w(f"| {KIND_LABEL[kind]} | {r['qbits_per_value']:.3f} | {r['bits_per_value']:.3f} | "
              f"{r['MB_read']:.1f} |")
    w("")

    # ---- targets
    w("## Targets (issue 5)\n")
    w("| target | measured | holds |")
    w("|---|---|---|")

    def target(text, value, ok):
        w(f"| {text} | {value} | {'yes' if ok else '**no**'} |")

    for kind in ("logquant2-w42", "logquant2-w48"):
        r = attend("llama3-8b", kind, 16384)
        f16, f32 = attend("llama3-8b", "fp16", 16384), attend("llama3-8b", "fp32", 16384)
        if r and f16 and f32:
            a, b = f16["seconds"] / r["seconds"], f32["seconds"] / r["seconds"]
            target(f"{KIND_LABEL[kind]}, 16K, 1 thread ({best}): ≥ 3× faster than fp16",
                   f"{a:.2f}× ({us(r['seconds'])} vs {us(f16['seconds'])} µs)", a >= 3)
            target(f"{KIND_LABEL[kind]}, 16K, 1 thread ({best}): ≥ 6× faster than fp32",
                   f"{b:.2f}× (vs {us(f32['seconds'])} µs)", b >= 6)
            if bw[1]:
                roof = r["MB_read"] * 1e6 / bw[1]
                target(f"{KIND_LABEL[kind]}, 16K: within 2× of the DRAM roofline",
                       f"{r['seconds'] / roof:.2f}× ({r['bytes_per_second'] / 1e9:.1f} GB/s achieved,"
                       f" {bw[1] / 1e9:.1f} GB/s DRAM; {r['MB_read']:.1f} MB read)",
                       r["seconds"] / roof <= 2)
                if fl and kind == "logquant2-w42":
                    w(f"| ↳ its arithmetic floor alone (`attend-floor`, no softmax) | "
                      f"{fl['seconds'] / roof:.2f}× ({us(fl['seconds'])} µs; 2× is {us(2 * roof)} µs) "
                      f"| – |")
                if fx and kind == "logquant2-w42":
                    w(f"| ↳ with the float work at its least (`attend-floor-mix`) | "
                      f"{fx['seconds'] / roof:.2f}× ({us(fx['seconds'])} µs) | – |")
                if fx and fp and kind == "logquant2-w42":
                    both = fx["seconds"] + fp["seconds"]
                    w(f"| ↳ and the full-precision tokens (`attend-floor-mix` + `attend-fp-part`) | "
                      f"{both / roof:.2f}× ({us(both)} µs) | – |")
        for c in (16384, 65536):
            p = find(rows, "attend-2t", shape="llama3-8b", cache=kind, ctx=c, isa=best)
            one, two = attend("llama3-8b", kind, c), attend("llama3-8b", kind, c, 2)
            apart = (f"; separate benchmarks: {one['seconds'] / two['seconds']:.2f}×"
                     if one and two else "")
            if p:
                target(f"{KIND_LABEL[kind]}, {c // 1024}K: 2 threads (pool) ≥ 1.7× one",
                       f"{p['speedup']:.2f}× paired ({us(p['t1_us'] * 1e-6)} vs "
                       f"{us(p['t2_us'] * 1e-6)} µs{apart})", p["speedup"] >= 1.7)
        dec = find(rows, "append/decode", cache=kind, isa=best)
        att = attend("llama3-8b", kind, 4096)
        if dec and att:
            p = 100 * dec["seconds"] / att["seconds"]
            target(f"{KIND_LABEL[kind]}: one appended token < 2% of a decode step at 4K",
                   f"{p:.2f}% ({us(dec['seconds'])} of {us(att['seconds'])} µs)", p < 2)
    for kind in ("logquant2-w42", "logquant2-w48", "kivi2-r128"):
        r = attend("llama3-8b", kind, 16384)
        if r:
            target(f"{KIND_LABEL[kind]}: ≤ 2.75 bits per quantized value (metadata included)",
                   f"{r['qbits_per_value']:.3f}", r["qbits_per_value"] <= 2.75)
    w("")
    w("![decode attention time against context length](decode_attention.png)\n")

    with open(os.path.join(args.out_dir, "report.md"), "w") as f:
        f.write("\n".join(md) + "\n")

    # ---- plot
    dat = os.path.join(args.out_dir, "decode_attention.dat")
    series = []
    with open(dat, "w") as f:
        for shape in ("llama3-8b", "hd64"):
            for kind in KIND_ORDER:
                pts = [(c, attend(shape, kind, c)) for c in CTXS]
                pts = [(c, r) for c, r in pts if r]
                if not pts:
                    continue
                f.write(f"# {shape} {kind}\n")
                for c, r in pts:
                    f.write(f"{c} {r['seconds'] * 1e3:.5f}\n")
                f.write("\n\n")
                series.append((shape, kind))
            if bw[1]:
                pts = [(c, attend(shape, "logquant2-w42", c)) for c in CTXS]
                pts = [(c, r) for c, r in pts if r]
                if pts:
                    f.write(f"# {shape} roofline\n")
                    for c, r in pts:
                        f.write(f"{c} {r['MB_read'] * 1e6 / bw[1] * 1e3:.5f}\n")
                    f.write("\n\n")
                    series.append((shape, "roofline"))
    styles = {
        "fp32": "lc rgb '#7f7f7f' lw 2 pt 5", "fp16": "lc rgb '#000000' lw 2 pt 7",
        "full-kvcache": "lc rgb '#bcbd22' lw 2 pt 4 dt 2",
        "logquant2-w42": "lc rgb '#d62728' lw 3 pt 9", "logquant2-w48": "lc rgb '#ff7f0e' lw 2 pt 8",
        "kivi2-r128": "lc rgb '#1f77b4' lw 2 pt 13", "logquant4-w42": "lc rgb '#2ca02c' lw 2 pt 11",
        "accurate-k4v2": "lc rgb '#9467bd' lw 2 pt 6",
        "roofline": "lc rgb '#d62728' lw 1 dt 3 pt -1",
    }
    labels = dict(KIND_LABEL, roofline="DRAM roofline of LogQuant 2-bit W=42")
    panels = []
    for shape, title in (("llama3-8b", "Llama-3-8B shape (32 q heads, 8 KV heads, dim 128)"),
                         ("hd64", "head dim 64 (32 q heads, 8 KV heads)")):
        plots = [f"'{dat}' index {i} using 1:2 with linespoints {styles[k]} title '{labels[k]}'"
                 for i, (s, k) in enumerate(series) if s == shape]
        if plots:
            panels.append((title, plots))
    gp = [
        "set terminal pngcairo size 1400,560 font 'sans,11'",
        f"set output '{os.path.join(args.out_dir, 'decode_attention.png')}'",
        f"set multiplot layout 1,{len(panels)} title 'Decode attention, one query token, one thread, "
        f"cold cache ({best}; {machine().split(',')[0]})'",
        "set logscale x 2", "set xrange [800:84000]",
        "set xtics ('1K' 1024, '4K' 4096, '16K' 16384, '64K' 65536)",
        "set logscale y 10", "set format y '%g'", "set grid", "set key bottom right font ',10'",
        "set xlabel 'context length (tokens)'", "set ylabel 'time per layer per decode step (ms)'",
    ]
    for title, plots in panels:
        gp.append(f"set title '{title}'")
        gp.append("plot " + ", ".join(plots))
    gp.append("unset multiplot")
    with open(os.path.join(args.out_dir, "decode_attention.gp"), "w") as f:
        f.write("\n".join(gp) + "\n")
    try:
        subprocess.run(["gnuplot", os.path.join(args.out_dir, "decode_attention.gp")], check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"warning: gnuplot failed ({e}); the table is written, the plot is not", file=sys.stderr)
    print(f"wrote {os.path.join(args.out_dir, 'report.md')}")


if __name__ == "__main__":
    main()
