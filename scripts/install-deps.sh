#!/usr/bin/env bash
# Installs the Debian packages Switchboard needs to build, run and test, if any are missing,
# and (with --test) the Python virtualenv the end-to-end tests use.
set -euo pipefail

cd "$(dirname "$0")/.."

# Build + run: system SQLite for GRDB, OpenSSL (DTLS), libsrtp2 (SRTP) for the media edge and
# usrsctp (SCTP data channels) for the peer agent.
# Tests add the real clients they drive.
packages=(libsqlite3-dev pkg-config libssl-dev libsrtp2-dev libusrsctp-dev)
if [[ "${1:-}" == "--test" ]]; then
    # ffmpeg pushes test streams, chromium plays them (in a namespace made with unshare + ip).
    packages+=(sqlite3 curl procps python3 python3-venv coturn openssl ffmpeg chromium iproute2 util-linux
        nftables conntrack iperf3 openssh-client openssh-server)
fi

missing=()
for package in "${packages[@]}"; do
    if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$package")
    fi
done
# A python3 from elsewhere (pyenv, a toolchain image) is fine if it can make a venv with pip.
if command -v python3 >/dev/null && python3 -c 'import venv, ensurepip' 2>/dev/null; then
    kept=()
    for package in "${missing[@]}"; do
        [[ "$package" == python3 || "$package" == python3-venv ]] || kept+=("$package")
    done
    missing=("${kept[@]}")
fi

if (( ${#missing[@]} > 0 )); then
    echo "install-deps: installing ${missing[*]}"
    sudo=""
    if [[ $(id -u) -ne 0 ]]; then sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi

if [[ "${1:-}" == "--test" ]]; then
    venv=.venv
    requirements=Tests/e2e/requirements.txt
    stamp="$venv/.requirements-installed"
    if [[ ! -x "$venv/bin/python" ]]; then
        python3 -m venv "$venv"
    fi
    if [[ ! -f "$stamp" ]] || ! cmp -s "$requirements" "$stamp"; then
        "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$requirements"
        cp "$requirements" "$stamp"
    fi
fi
