# Throughput per allocator per trace: grouped bars (a group per trace, a bar per allocator),
# whiskers from the slowest to the fastest timed repetition. Log scale: throughputs of
# allocators span several decades. datafile: a row per trace; per allocator the ops/s at
# the median, at the slowest and at the fastest repetition.
eval setterm(clamp(260 + ntrace * (nalloc * 12 + 40), 900, 4000), 640)
set title sprintf("Throughput per allocator and trace (%s)\nbar: median of the timed repetitions; whisker: slowest to fastest", source)
set xlabel "trace"
# Log scale when the figures span a decade and a half or more (logy, from scripts/plots).
if (logy) {
  set logscale y
  set ylabel "throughput (ops/s, log scale)"
} else {
  set yrange [0:*]
  set ylabel "throughput (ops/s)"
}
set format y "%.0s%c"
set style data histogram
set style histogram errorbars gap 2 lw 1
set style fill solid 0.9 border rgb "#333333"
set boxwidth 0.95
set bars 0.5
set key outside right top vertical Left reverse samplen 1.5 title "allocator"
set xtics scale 0
set xrange [-0.55:ntrace - 0.45]
plot for [a=1:nalloc] datafile using 3*a-1:3*a:3*a+1:xtic(trace[int($1)+1]) \
  title alloc[a] lc rgb col(a)
