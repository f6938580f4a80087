#!/usr/bin/env bash
# The API reference, generated from the docstrings (pdoc; the `dev` extra): one HTML page
# per module under docs/api/ (or the folder given), index at docs/api/index.html.
# Generated, not committed (docs/api/ is in .gitignore), so it cannot drift from the code;
# tests/test_api_docs.py runs this script.
#   bash scripts/api_docs.sh            # -> docs/api/
#   bash scripts/api_docs.sh /tmp/api   # elsewhere
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-docs/api}
PY=${PYTHON:-.venv/bin/python}
# Figures are drawn nowhere at import, but matplotlib must never look for a display.
# Every module by name: the subpackages' faces and the lazy top level (`spherevae.fit` is
# imported on first use) list names in __all__, not their modules, which pdoc would skip.
mapfile -t modules < <("$PY" -c "import pkgutil, spherevae
print('\n'.join(['spherevae.api'] + sorted(m.name for m in pkgutil.walk_packages(spherevae.__path__, 'spherevae.')
      if not m.name.endswith('__main__') and m.name != 'spherevae.api')))")
MPLBACKEND=Agg "$PY" -m pdoc --docformat google --no-show-source -o "$out" "${modules[@]}"
echo "API reference: $out/index.html"
