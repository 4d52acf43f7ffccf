#!/usr/bin/env bash
# Fetch the evaluation data that comes from Debian packages into a cache folder (default data/eval, gitignored):
#   opencv-doc         examples/data/graf1.png, graf3.png, H1to3p.xml  (graf benchmark, ground-truth homography)
#   visp-images-data   ViSP-images/video/cube.mpeg                     (video benchmark: hand-held camera)
# Uses `apt-get download` + `dpkg -x` (no root needed for those; run `apt-get update` first on a fresh machine).
# Usage: scripts/fetch_eval_data.sh [DEST]
set -euo pipefail
cd "$(dirname "$0")/.."
dest="${1:-data/eval}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
chmod a+rwx "$work"  # lets apt-get download drop privileges to _apt (else it warns)

fetch() {  # fetch PACKAGE SUBDIR PATH_IN_PACKAGE...
    local package="$1" subdir="$2"
    shift 2
    (cd "$work" && apt-get download "$package" >/dev/null)
    dpkg -x "$work/${package}"_*.deb "$work/$package"
    mkdir -p "$dest/$subdir"
    for path in "$@"; do
        cp "$work/$package/$path" "$dest/$subdir/"
    done
    rm -rf "$work/$package" "$work/${package}"_*.deb  # the packages are ~75-95 MB each; keep only what we use
}

if [ ! -f "$dest/opencv-doc/H1to3p.xml" ]; then
    data=usr/share/doc/opencv-doc/examples/data
    fetch opencv-doc opencv-doc "$data/graf1.png" "$data/graf3.png" "$data/H1to3p.xml"
fi
if [ ! -f "$dest/visp-images-data/cube.mpeg" ]; then
    fetch visp-images-data visp-images-data usr/share/visp-images-data/ViSP-images/video/cube.mpeg
fi
ls -l "$dest"/*/
