#!/usr/bin/env bash
# deps.sh CMD[:PACKAGE]... — make sure each command exists, installing its
# Debian package (named like the command unless given) when it does not
# (needs root and apt). A CMD that starts with "/" is a file that must
# exist (a loadable module, say), and names its PACKAGE.
set -euo pipefail
missing=()
for arg in "$@"; do
	cmd=${arg%%:*} pkg=${arg#*:}
	case $cmd in
	/*) [ -e "$cmd" ] || missing+=("$pkg") ;;
	*) command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg") ;;
	esac
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" -ne 0 ]; then
	echo "deps.sh: missing ${missing[*]}; install them (Debian: apt-get install ${missing[*]})" >&2
	exit 1
fi
echo "deps.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
