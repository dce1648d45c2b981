# Fragmentation per allocator per trace, two panels: frag4 (peak footprint over peak live)
# and frag1 (footprint over live, averaged over the replay), per METRICS.md. Log scale:
# figures run from a few percent to thousands of times the live bytes. Values under 0.1%
# (and negative ones) are drawn at 0.1%, the axis floor.
# frag4file, frag1file: a row per trace; per allocator the fraction three times.
w = clamp(260 + ntrace * (nalloc * 12 + 40), 900, 4000)
eval setterm(w, 980)
set multiplot layout 2,1 title sprintf("Fragmentation per allocator and trace (%s)\nbars at the floor: 0.1%% or less", source)
set lmargin at screen 100.0 / w
set rmargin at screen 1 - 190.0 / w
set logscale y
set yrange [0.001:*]
set ytics ("0.1%%" 0.001, "1%%" 0.01, "10%%" 0.1, "100%%" 1, "1000%%" 10, "10^4%%" 100, \
           "10^5%%" 1000, "10^6%%" 10000, "10^7%%" 100000, "10^8%%" 1000000)
set mytics 10
set style data histogram
set style histogram clustered gap 2
set style fill solid 0.9 border rgb "#333333"
set boxwidth 0.95
set xtics scale 0
set xrange [-0.55:ntrace - 0.45]
set key at screen 0.995, 0.93 right top vertical Left reverse samplen 1.5 title "allocator"
set title "frag4 = (peak footprint - peak live) / peak live"
set ylabel "frag4 (log scale)"
plot for [a=1:nalloc] frag4file using 3*a-1:xtic(trace[int($1)+1]) title alloc[a] lc rgb col(a)
unset key
set title "frag1 = mean over the replay of (footprint(t) - live(t)) / live(t)"
set ylabel "frag1 (log scale)"
set xlabel "trace"
plot for [a=1:nalloc] frag1file using 3*a-1:xtic(trace[int($1)+1]) title alloc[a] lc rgb col(a)
unset multiplot
