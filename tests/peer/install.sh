#!/usr/bin/env bash
# install.sh: installs the PyTorch + diffusers reference peer (the provenance of shared/fixtures)
# reproducibly: Debian's python3-torch 1.13.1+dfsg-4 via apt, then tests/peer/.venv on /usr/bin/python3
# with --system-site-packages and the pins of requirements.txt. Idempotent; prints what it did.
# The peer is for side-by-side benchmarks (scripts/bench/run.sh); no test or CI step needs it.
#   tests/peer/install.sh            the reference peer (torch 1.13, tests/peer/.venv)
#   tests/peer/install.sh --torch2   also the opt-in torch 2.5.1 peer in tests/peer/.venv-torch2
#                                    (requirements-torch2.txt: ~3 GB of CUDA wheels from PyPI), whose
#                                    CPU autocast runs diffusers' GroupNorm: the fair bf16 peer
set -euo pipefail
torch2=0
for a in "$@"; do
  case "$a" in
    --torch2) torch2=1 ;;
    *) echo "usage: tests/peer/install.sh [--torch2]" >&2; exit 2 ;;
  esac
done
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="$here/.venv"
req="$here/requirements.txt"
TORCH_DEB_VERSION="1.13.1+dfsg-4"
APT_PKGS=(python3-torch python3-numpy python3-venv python3-pip)

say() { echo "peer install: $*"; }

# 1. Debian packages (torch pinned to the exact Debian version the fixtures were made with)
missing=()
for p in "${APT_PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
have_torch="$(dpkg-query -W -f='${Version}' python3-torch 2>/dev/null || true)"
if [ ${#missing[@]} -gt 0 ] || [ "$have_torch" != "$TORCH_DEB_VERSION" ]; then
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null || { say "need root (or sudo) to apt-get install ${missing[*]}" >&2; exit 1; }
    SUDO=(sudo)
  fi
  say "apt-get install ${missing[*]} python3-torch=$TORCH_DEB_VERSION"
  "${SUDO[@]}" apt-get update -qq
  "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" "python3-torch=$TORCH_DEB_VERSION"
else
  say "Debian packages present (python3-torch $have_torch)"
fi

# 2. the virtual environment: /usr/bin/python3, seeing Debian's torch and numpy
if [ -x "$venv/bin/python" ] && grep -q '^include-system-site-packages = true' "$venv/pyvenv.cfg" 2>/dev/null \
   && grep -q '^home = /usr/bin$' "$venv/pyvenv.cfg" 2>/dev/null; then
  say "virtual environment present: $venv"
else
  say "creating $venv (/usr/bin/python3 -m venv --system-site-packages)"
  rm -rf "$venv"
  /usr/bin/python3 -m venv --system-site-packages "$venv"
fi

# 3. pinned Python packages; pip only downloads what is missing or at another version
stamp="$venv/.requirements.sha256"
want="$(sha256sum "$req" | cut -d' ' -f1)"
pins_ok() {  # every pin of requirements.txt installed at exactly its version
  "$venv/bin/python" - "$req" <<'PY'
import sys, re
from importlib.metadata import version, PackageNotFoundError
for line in open(sys.argv[1]):
    m = re.match(r"\s*([A-Za-z0-9_.-]+)==(\S+)", line)
    if not m: continue
    try:
        if version(m.group(1)) != m.group(2): sys.exit(1)
    except PackageNotFoundError:
        sys.exit(1)
PY
}
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && pins_ok; then
  say "pinned packages present (requirements.txt unchanged)"
else
  say "pip install -r requirements.txt"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$req"
  echo "$want" > "$stamp"
fi

# 4. show what the peer is
"$venv/bin/python" - <<'PY'
import sys, numpy, torch, diffusers, huggingface_hub, safetensors, psutil
print("peer install: python %s (%s)" % (sys.version.split()[0], sys.executable))
print("peer install: torch %s, diffusers %s, huggingface_hub %s, safetensors %s, numpy %s, psutil %s" % (
    torch.__version__, diffusers.__version__, huggingface_hub.__version__, safetensors.__version__,
    numpy.__version__, psutil.__version__))
PY

# 5. opt-in: the torch 2.x peer (its own venv: Debian's torch 1.13 must not be visible in it)
if [ "$torch2" = 1 ]; then
  venv2="$here/.venv-torch2"
  req2="$here/requirements-torch2.txt"
  if [ ! -x "$venv2/bin/python" ]; then
    say "creating $venv2 (/usr/bin/python3 -m venv, no system site packages)"
    /usr/bin/python3 -m venv "$venv2"
  fi
  stamp2="$venv2/.requirements.sha256"
  want2="$(cat "$req" "$req2" | sha256sum | cut -d' ' -f1)"
  if [ -f "$stamp2" ] && [ "$(cat "$stamp2")" = "$want2" ]; then
    say "torch2 peer present (requirements unchanged)"
  else
    say "pip install --no-deps -r requirements-torch2.txt -r requirements.txt (torch 2.5.1 + CUDA 12 wheels, ~3 GB)"
    "$venv2/bin/python" -m pip install -q --disable-pip-version-check --no-deps -r "$req2" -r "$req"
    echo "$want2" > "$stamp2"
  fi
  "$venv2/bin/python" - <<'PY'
import sys, torch, diffusers
print("peer install: torch2 peer: python %s, torch %s, diffusers %s (%s)" % (
    sys.version.split()[0], torch.__version__, diffusers.__version__, sys.executable))
PY
  say "bf16 rows against it: scripts/bench/run.sh --peer-python tests/peer/.venv-torch2/bin/python --bf16"
fi
say "done; run benchmarks with scripts/bench/run.sh"
