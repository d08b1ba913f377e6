# Sourced by the install scripts: `apt_install WHAT PACKAGE...` installs Debian packages with apt-get
# (through sudo when not root), or says WHAT to install by hand where there is no apt-get.
apt_install() {
  local what="$1"
  shift
  if ! command -v apt-get >/dev/null; then
    echo "$(basename "$0"): no apt-get here: install $what with your package manager" >&2
    exit 1
  fi
  local sudo=""
  if [ "$(id -u)" != "0" ]; then sudo="sudo"; fi
  echo "$(basename "$0"): installing $what with apt-get ($*)"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}
