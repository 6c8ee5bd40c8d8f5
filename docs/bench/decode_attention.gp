set terminal pngcairo size 1400,560 font 'sans,11'
set output 'docs/bench/decode_attention.png'
set multiplot layout 1,1 title 'Decode attention, one query token, one thread, cold cache (avx512; AMD EPYC)'
set logscale x 2
set xrange [800:84000]
set xtics ('1K' 1024, '4K' 4096, '16K' 16384, '64K' 65536)
set logscale y 10
set format y '%g'
set grid
set key bottom right font ',10'
set xlabel 'context length (tokens)'
set ylabel 'time per layer per decode step (ms)'
set title 'Llama-3-8B shape (32 q heads, 8 KV heads, dim 128)'
plot 'docs/bench/decode_attention.dat' index 0 using 1:2 with linespoints lc rgb '#7f7f7f' lw 2 pt 5 title 'fp32 dense (baseline)', 'docs/bench/decode_attention.dat' index 1 using 1:2 with linespoints lc rgb '#000000' lw 2 pt 7 title 'fp16 dense (baseline)', 'docs/bench/decode_attention.dat' index 2 using 1:2 with linespoints lc rgb '#bcbd22' lw 2 pt 4 dt 2 title 'KVCache<FullSelector> (fp32)', 'docs/bench/decode_attention.dat' index 3 using 1:2 with linespoints lc rgb '#d62728' lw 3 pt 9 title 'LogQuant 2-bit, W=42', 'docs/bench/decode_attention.dat' index 4 using 1:2 with linespoints lc rgb '#ff7f0e' lw 2 pt 8 title 'LogQuant 2-bit, W=48', 'docs/bench/decode_attention.dat' index 5 using 1:2 with linespoints lc rgb '#1f77b4' lw 2 pt 13 title 'KIVI 2-bit, R=128', 'docs/bench/decode_attention.dat' index 6 using 1:2 with linespoints lc rgb '#9467bd' lw 2 pt 6 title 'presets::accurate (4-bit keys, 2-bit values, 128 FP)', 'docs/bench/decode_attention.dat' index 7 using 1:2 with linespoints lc rgb '#d62728' lw 1 dt 3 pt -1 title 'DRAM roofline of LogQuant 2-bit W=42'
unset multiplot
