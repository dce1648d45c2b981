# Footprint versus live bytes over the replay, a panel per trace (the classic plot of
# Wilson et al.): a line per allocator's footprint, live bytes in dashed black (the same
# for every allocator). logy[i]: the log axis's floor when the panel's peaks are ten times
# apart or more, else 0 (linear). has[i]: 0 when the trace has no rows.
# datadir/series-I.dat: blocks (index a-1) of op, live bytes, footprint bytes per
# allocator, then the live bytes alone as block nalloc.
cols = ntrace < 3 ? ntrace : 3
rows = (ntrace + cols - 1) / cols
w = cols * 560 + 260
h = rows * 400 + 90
eval setterm(w, h)
# margins and spacing in pixels, whatever the number of panels
set multiplot layout rows,cols margins 90.0 / w, 1 - 240.0 / w, 55.0 / h, 1 - 80.0 / h \
  spacing 70.0 / w, 90.0 / h title sprintf("Footprint and live bytes over the replay (%s)", source)
set xlabel "op"
set format x "%.0s%c"
set format y "%.0s %cB"
set autoscale xfix
set key at screen 0.995, 1 - 80.0 / h right top vertical Left reverse samplen 2 title "footprint of"
do for [i=1:ntrace] {
  f = sprintf("%sseries-%d.dat", datadir, i - 1)
  set title trace[i]
  if (logy[i] > 0) {
    set logscale y
    set yrange [logy[i]:*]
    set ylabel "bytes (log scale, k = 10^3)"
  } else {
    unset logscale y
    set yrange [0:*]
    set ylabel "bytes (k = 10^3)"
  }
  if (i > 1) { unset key }
  if (has[i]) {
    unset label 1
    set autoscale xfix
    plot for [a=1:nalloc] f index a-1 using 1:3 with lines lw 1.5 lc rgb col(a) title alloc[a], \
         f index nalloc using 1:2 with lines lw 2.5 dt 2 lc rgb "black" title "live (requested)"
  } else {
    set label 1 "no series rows for this trace" at graph 0.5, 0.5 center
    set xrange [0:1]
    set yrange [0:1]
    plot for [a=1:nalloc] 1/0 lc rgb col(a) title alloc[a], 1/0 lc rgb "black" dt 2 \
         title "live (requested)"
  }
}
unset multiplot
