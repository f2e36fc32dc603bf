# Sourced by the GPU scripts (from the repository root): puts the root on PYTHONPATH and, where `make offline` filled
# $OFFLINE (default ./offline), installs its wheels into a temporary folder (the image's own packages stay as they
# are) and points CXRGM_CACHE at its sample-image cache.
OFFLINE=${OFFLINE:-offline}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if compgen -G "$OFFLINE/wheels/*.whl" > /dev/null; then
  site=$(mktemp -d)
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$OFFLINE"/wheels/*.whl || exit 1
  export PYTHONPATH="$site:$PYTHONPATH"
fi
if [[ -d "$OFFLINE/cache/sample" && -z "${CXRGM_CACHE:-}" ]]; then
  CXRGM_CACHE=$(cd "$OFFLINE/cache" && pwd)
  export CXRGM_CACHE
fi
