#!/usr/bin/env bash
# install.sh: installs the PyTorch + diffusers reference peer (the provenance of shared/fixtures)
# reproducibly: Debian's python3-torch 1.13.1+dfsg-4 via apt, then tests/peer/.venv on /usr/bin/python3
# with --system-site-packages and the pins of requirements.txt. Idempotent; prints what it did.
# The peer is for side-by-side benchmarks (scripts/bench/run.sh); no test or CI step needs it.
set -euo pipefail
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
say "done; run benchmarks with scripts/bench/run.sh"
