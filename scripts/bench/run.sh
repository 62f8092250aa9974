#!/usr/bin/env bash
# run.sh: the side-by-side benchmark driver (scripts/bench/run.py) under the system Python;
# see run.py --help. The peer comes from tests/peer/install.sh.
exec /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/run.py" "$@"
