#!/usr/bin/env bash
# Draws docs/snd-be-waveform.png: the left channel of the signal a guest
# played (tests/xen/snd_signal.h) against what shbuf snd-be wrote of it, from
# a WAV of the real-Xen sound test (build-xen/xen-run/snd/be/*.wav).
# Usage: scripts/plot-snd.sh WAV [OUT.png] [BUILD_DIR]
set -euo pipefail
wav=${1:?usage: scripts/plot-snd.sh WAV [OUT.png] [BUILD_DIR]}
out=${2:-docs/snd-be-waveform.png}
build=${3:-build}
frames=324
command -v gnuplot >/dev/null || { echo "plot-snd: gnuplot is missing (apt-get install gnuplot-nox)" >&2; exit 1; }
[ -x "$build/shbuf_snd_check" ] || cmake --build "$build" --target shbuf_snd_check >/dev/null
data=$(mktemp)
trap 'rm -f "$data"' EXIT
"$build/shbuf_snd_check" dump "$wav" "$frames" >"$data"
gnuplot <<GP
set terminal pngcairo size 900,360 font "DejaVu Sans,10"
set output "$out"
set title "Played in the guest (snd\\\\_xen\\\\_front) and written by snd-be: left channel, first $frames frames at 48 kHz"
set xlabel "frame"
set ylabel "sample (S16\\\\_LE)"
set yrange [-36000:40000]
set key top right
plot "$data" using 1:2 with lines lw 6 lc rgb "#b0c4de" title "played (snd\\\\_signal.h)", \
     "$data" using 1:3 with points pt 7 ps 0.4 lc rgb "#c0392b" title "written by snd-be (WAV)"
GP
echo "plot-snd: wrote $out"
