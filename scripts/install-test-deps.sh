#!/usr/bin/env bash
# Installs what the test suite needs on a Debian machine, when missing and
# when this user can: redis-server (the Redis router's tests run against a
# real server). Without root or apt-get it says what is missing and carries
# on; the tests then skip or (with IMCLOUD_REQUIRE_BACKENDS=1) fail.
set -euo pipefail

apt_install() {
	local sudo=""
	if [ "$(id -u)" != 0 ]; then
		if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
			sudo="sudo -n"
		else
			echo "install-test-deps: not root and no sudo; please install: $*" >&2
			return 0
		fi
	fi
	if ! command -v apt-get >/dev/null 2>&1; then
		echo "install-test-deps: no apt-get; please install: $*" >&2
		return 0
	fi
	export DEBIAN_FRONTEND=noninteractive
	$sudo apt-get install -y -q "$@" >/dev/null 2>&1 ||
		{ $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "$@" >/dev/null; }
}

if ! command -v redis-server >/dev/null 2>&1; then
	echo "install-test-deps: installing redis-server"
	apt_install redis-server
fi
