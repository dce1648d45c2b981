# Peak resident set size of each cell's process per allocator per trace: grouped bars.
# datafile: a row per trace; per allocator MiB three times (no whiskers: a single figure).
eval setterm(clamp(260 + ntrace * (nalloc * 12 + 40), 900, 4000), 640)
set title sprintf("Peak RSS per allocator and trace (%s)\nthe cell's process: the harness's arrays and the allocator's pages", source)
set xlabel "trace"
# Log scale when the figures span a decade and a half or more (logy, from scripts/plots).
if (logy) {
  set logscale y
  set ylabel "peak RSS (MiB, log scale)"
} else {
  set yrange [0:*]
  set ylabel "peak RSS (MiB)"
}
set style data histogram
set style histogram clustered gap 2
set style fill solid 0.9 border rgb "#333333"
set boxwidth 0.95
set key outside right top vertical Left reverse samplen 1.5 title "allocator"
set xtics scale 0
set xrange [-0.55:ntrace - 0.45]
plot for [a=1:nalloc] datafile using 3*a-1:xtic(trace[int($1)+1]) title alloc[a] lc rgb col(a)
