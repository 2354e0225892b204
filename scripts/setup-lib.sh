# Shared by scripts/test and scripts/demo (sourced, not run): the virtual environment and the system packages.
# shellcheck shell=bash

# The Debian packages the end-to-end tests drive, each with how to tell it is there.
missing_test_packages() {
  local need=""
  python3 -c 'import ensurepip' >/dev/null 2>&1 || need="$need python3-venv"
  [ -x /usr/sbin/mosquitto ] || command -v mosquitto >/dev/null || need="$need mosquitto"
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need="$need postgresql"
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need="$need nginx-light"
  command -v openssl >/dev/null || need="$need openssl"
  [ -x /usr/bin/redis-server ] || command -v redis-server >/dev/null || need="$need redis-server"
  [ -x /usr/bin/chromium ] || need="$need chromium"
  [ -d /usr/share/fonts/opentype/noto ] || need="$need fonts-noto-cjk"
  echo "${need# }"
}

# Install what is missing as root with apt-get; otherwise say what is missing and how to get it, and fail.
install_packages() {
  local need="$1"
  [ -n "$need" ] || return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing $need (apt-get)"
    apt-get update -qq
    # shellcheck disable=SC2086  # one word per package
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $need >/dev/null
    return 0
  fi
  echo "setup: missing system packages: $need" >&2
  if command -v apt-get >/dev/null; then
    echo "setup: install them with:  sudo apt-get install --no-install-recommends $need" >&2
  else
    echo "setup: not a Debian system: install the equivalents of these Debian packages with your package manager" >&2
  fi
  echo "setup: (or run this script as root, and it installs them)" >&2
  return 1
}

# .venv with the project installed (editable) with the given extras ("" for none); installed again only when
# pyproject.toml changed or other extras are asked for (no extras: any install of this pyproject.toml will do).
ensure_venv() {
  local extras="$1" stamp=".venv/.chargeapp-installed" want have
  if [ ! -x .venv/bin/python ]; then
    echo "setup: creating .venv"
    python3 -m venv .venv
  fi
  want="$(sha256sum pyproject.toml | cut -d' ' -f1) $extras"
  have="$(cat "$stamp" 2>/dev/null || true)"
  if [ -z "$extras" ] && [ "${have%% *}" = "${want%% *}" ]; then
    return 0
  fi
  if [ "$have" != "$want" ]; then
    echo "setup: installing the project into .venv ($extras)"
    .venv/bin/pip install --quiet --upgrade pip
    .venv/bin/pip install --quiet -e ".$extras"
    echo "$want" > "$stamp"
  fi
}
