# Sourced by the GPU scripts (from the repository root): puts the root on PYTHONPATH, keeps compiled bytecode, and,
# where `make offline` filled $OFFLINE (default ./offline), installs its wheels into a temporary folder (the image's
# own packages stay as they are) and points CXRGM_CACHE at its sample-image cache.
OFFLINE=${OFFLINE:-offline}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# Bytecode of every imported module, the image's packages included, kept in one writable folder: where the
# environment sets PYTHONDONTWRITEBYTECODE and packages lack bytecode (on the H200 host every new process compiled
# ~2,300 modules, ~7 s; here 7.2 s for the first import of torch + transformers + datasets, 2.9 s after) each of the
# scripts' processes compiled them again.
export PYTHONDONTWRITEBYTECODE= PYTHONPYCACHEPREFIX=${PYTHONPYCACHEPREFIX:-${TMPDIR:-/tmp}/cxrgm-pycache}
if compgen -G "$OFFLINE/wheels/*.whl" > /dev/null; then
  site=$(mktemp -d)
  "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$OFFLINE"/wheels/*.whl || exit 1
  export PYTHONPATH="$site:$PYTHONPATH"
fi
if [[ -d "$OFFLINE/cache/sample" && -z "${CXRGM_CACHE:-}" ]]; then
  CXRGM_CACHE=$(cd "$OFFLINE/cache" && pwd)
  export CXRGM_CACHE
fi
