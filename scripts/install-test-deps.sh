#!/usr/bin/env bash
# Installs what the test suite needs on a Debian machine, when missing and
# when this user can: redis-server and redis-cli (the Redis router's tests
# run against real servers, and redis-cli joins them into a Redis Cluster);
# Node.js, npm and Debian's chromium, and examples/web's npm packages from
# its lockfile, for the browser client's tests and its npm package's (the
# browser test never downloads a browser). Without root or
# apt-get it says what is missing and carries on; the tests then skip or
# (with IMCLOUD_REQUIRE_BACKENDS=1) fail.
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

if ! command -v redis-server >/dev/null 2>&1 || ! command -v redis-cli >/dev/null 2>&1; then
	echo "install-test-deps: installing redis-server and redis-tools (redis-cli)"
	apt_install redis-server redis-tools
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
	echo "install-test-deps: installing nodejs and npm"
	apt_install nodejs npm
fi
if [ ! -x /usr/bin/chromium ]; then
	echo "install-test-deps: installing chromium"
	apt_install chromium
fi
# examples/web's packages (playwright-core, typescript), exactly as its lockfile says.
web="$(dirname "$0")/../examples/web"
if command -v npm >/dev/null 2>&1; then
	if [ "$web/package-lock.json" -nt "$web/node_modules/.package-lock.json" ]; then
		echo "install-test-deps: npm ci in examples/web"
		(cd "$web" && npm ci --no-audit --no-fund >/dev/null)
	fi
else
	echo "install-test-deps: no npm; please install nodejs and npm, then run npm ci in examples/web" >&2
fi
