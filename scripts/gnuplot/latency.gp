# Latency percentiles of one op kind, a panel per trace that has such ops: a line per
# allocator from p50 to max (log scale: tails are decades above medians). The timer's
# overhead is already subtracted; values under 1 ns (below the timer's resolution) are
# drawn at 1 ns. datadir/lat-KIND-I.dat: a row per percentile (label, then seconds per
# allocator); panel[1..npanel]: the traces (1-based) to draw.
cols = npanel < 3 ? npanel : 3
rows = (npanel + cols - 1) / cols
w = cols * 520 + 260
h = rows * 400 + 90
eval setterm(w, h)
# margins and spacing in pixels, whatever the number of panels
set multiplot layout rows,cols margins 90.0 / w, 1 - 240.0 / w, 55.0 / h, 1 - 80.0 / h \
  spacing 70.0 / w, 90.0 / h title sprintf("%s latency percentiles per allocator and trace (%s)\nsampled ops, timer overhead subtracted; timer resolution about %.0f ns", kind, source, timer)
set logscale y
set format y "%.0s %cs"
set ylabel "latency per op (log scale)"
set xlabel "percentile"
set xrange [-0.3:4.3]
set xtics ("p50" 0, "p90" 1, "p99" 2, "p99.9" 3, "max" 4)
set key at screen 0.995, 1 - 80.0 / h right top vertical Left reverse samplen 2 title "allocator"
do for [j=1:npanel] {
  i = panel[j]
  f = sprintf("%slat-%s-%d.dat", datadir, kind, i - 1)
  set title trace[i]
  if (j > 1) { unset key }
  plot for [a=1:nalloc] f using 0:a+1 with linespoints lw 1.5 pt 7 ps 0.6 \
    lc rgb col(a) title alloc[a]
}
unset multiplot
