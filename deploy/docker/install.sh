#!/bin/sh
# Install kflow into a fresh virtualenv from a wheelhouse, offline: the image's build step
# (deploy/docker/Dockerfile) and, unchanged, what CI runs as a non-root user (tests/deploy).
#   install.sh WHEELHOUSE VENV
set -eu
wheelhouse=$1
venv=$2
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --no-index --find-links "$wheelhouse" kflow
# A fixed path for the shipped example definitions (kflow definitions apply VENV/examples/...).
examples=$("$venv/bin/python" -c 'import kflow.examples, os; print(os.path.dirname(kflow.examples.__file__))')
ln -s "$examples" "$venv/examples"
"$venv/bin/kflow" --help >/dev/null
"$venv/bin/kflow" definitions validate "$venv/examples/docpipe/docpipe.yaml" >/dev/null
echo "installed $("$venv/bin/pip" show kflow | sed -n 's/^Version: /kflow /p') into $venv"
