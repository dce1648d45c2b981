# Shared by every figure of scripts/plots: colours, the terminal, data conventions.
# scripts/plots sets before loading: fmt ("png" or "svg"), outfile, and vars.gp's arrays
# alloc[1..nalloc] (allocator labels), trace[1..ntrace] (trace labels) and source (the CSV).

# Twenty distinct colours (Tableau 20, the strong ones first); allocator a keeps colour a
# in every figure.
array colour[20] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", \
                    "#e377c2", "#7f7f7f", "#bcbd22", "#17becf", "#aec7e8", "#ffbb78", \
                    "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7", \
                    "#dbdb8d", "#9edae5"]
col(a) = colour[(a - 1) % 20 + 1]

# The terminal for a w x h pixel figure.
setterm(w, h) = (fmt eq "svg" ? \
  sprintf("set terminal svg size %d,%d dynamic noenhanced font 'Sans,12' background '#ffffff'", w, h) : \
  sprintf("set terminal pngcairo size %d,%d noenhanced font 'Sans,10' background '#ffffff'", w, h)) \
  . sprintf("; set output '%s'", outfile)

clamp(x, lo, hi) = x < lo ? lo : x > hi ? hi : x

set datafile missing NaN
set border 3
set tics nomirror
set grid ytics lc rgb "#dddddd" lt 1
