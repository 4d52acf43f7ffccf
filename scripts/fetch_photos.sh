#!/usr/bin/env bash
# Rebuild a training corpus comparable to ../shared/data/photos/train from Debian packages, for users without
# ../shared: `apt-get download` each package (no root, nothing installed), `dpkg -x` it into a scratch folder,
# keep real photographs (JPEG/PNG/WebP with a shorter side of at least 256 px), and write them as JPEG
# (quality 90, longest side at most 1024 px) into OUT. These are the packages most of the shared photos
# came from (see ../shared/data/photos/SOURCES.md); lxqt-themes and palapeli-data are left out on purpose,
# because the shared evaluation photos come from them. gcompris-qt-data is skipped: its images sit inside
# Qt resource archives that need extra tools.
#
# usage: scripts/fetch_photos.sh [OUT [PACKAGE...]]
#   OUT defaults to data/photos/train; PACKAGEs replace the default list. Needs apt sources and python3 + OpenCV.
set -euo pipefail

OUT=${1:-data/photos/train}
PACKAGES=(
    lomiri-wallpapers-16.04 lomiri-wallpapers-20.04 mate-backgrounds plasma-workspace-wallpapers
    tuxpaint-data gnome-control-center-data opencv-doc python3-skimage labelme-examples
)
if [ $# -gt 1 ]; then PACKAGES=("${@:2}"); fi
PYTHON=${PYTHON:-python3}
for venv in .venv-jazzy .venv-kilted; do  # the project's venv, where one is set up
  if [ -x "$(dirname "$0")/../$venv/bin/python" ]; then PYTHON="$(dirname "$0")/../$venv/bin/python"; break; fi
done

SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
mkdir -p "$OUT"

for pkg in "${PACKAGES[@]}"; do
    echo "== $pkg"
    if ! (cd "$SCRATCH" && apt-get download "$pkg" >/dev/null); then
        echo "   cannot download $pkg (no apt source for it?); skipped" >&2
        continue
    fi
    dpkg -x "$SCRATCH/${pkg}"_*.deb "$SCRATCH/$pkg"
    rm -f "$SCRATCH/${pkg}"_*.deb
done

# Convert with OpenCV: skip icons and drawings too small to crop from, keep only the largest of the several
# resolutions a wallpaper ships (NAME_WxH.jpg, or plasma's contents/images/WxH.jpg), name files PACKAGE_NAME.jpg.
"$PYTHON" - "$SCRATCH" "$OUT" "${PACKAGES[@]}" <<'EOF'
import re
import sys
from pathlib import Path

import cv2

scratch, out, packages = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3:]
count = 0
for pkg in packages:
    root = scratch / pkg
    if not root.is_dir():
        continue
    files = [p for p in root.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp") and p.is_file()]
    best: dict[tuple[Path, str], Path] = {}
    for path in files:
        base = re.sub(r"[_-]?\d+x\d+$", "", path.stem)  # Elephants_3840x2160 -> Elephants, 2560x1600 -> ""
        key = (path.parent, base)
        if key not in best or path.stat().st_size > best[key].stat().st_size:
            best[key] = path
    for (parent, base), path in sorted(best.items()):
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None or min(img.shape[:2]) < 256:
            continue
        scale = 1024 / max(img.shape[:2])
        if scale < 1:
            img = cv2.resize(img, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        name = base or parent.parent.name  # plasma: contents/images/WxH.jpg is named after the wallpaper folder
        target = out / f"{pkg}_{re.sub(r'[^A-Za-z0-9_.-]', '_', name)}.jpg"
        cv2.imwrite(str(target), img, [cv2.IMWRITE_JPEG_QUALITY, 90])
        count += 1
print(f"wrote {count} photos to {out}")
EOF
