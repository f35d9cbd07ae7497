#!/usr/bin/env bash
# Installs what `npm test`, `npm run demo` and `npm run bench` need on a fresh Debian 12 machine:
# HAProxy, ZooKeeper (+ a JRE), dnsmasq, promtool (package prometheus), Chromium from apt (as root), and the npm
# packages. Idempotent and quiet when
# everything is there.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v haproxy >/dev/null 2>&1 || missing+=(haproxy)
[ -f /usr/share/java/zookeeper.jar ] && command -v java >/dev/null 2>&1 || missing+=(zookeeper)
command -v dnsmasq >/dev/null 2>&1 || [ -x /usr/sbin/dnsmasq ] || missing+=(dnsmasq)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v ps >/dev/null 2>&1 || missing+=(procps)   # test/e2e/least-privilege.test.ts: ps -o user=
command -v ip >/dev/null 2>&1 || missing+=(iproute2)  # test/e2e/auth.test.ts: a network namespace with a veth pair
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)  # test/e2e/system.test.ts: promtool check metrics
[ -x /usr/bin/chromium ] || missing+=(chromium)  # test/e2e/status-page.test.ts: the page in a real headless browser
if [ ${#missing[@]} -gt 0 ]; then
  echo "ensure-deps: installing ${missing[*]} with apt-get" >&2
  if [ "$(id -u)" -ne 0 ]; then
    echo "ensure-deps: need root to apt-get install ${missing[*]} (run as root or install them first)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >&2
  apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
fi

# Debian starts services on install where it can; tests start their own instances on free ports.
for svc in haproxy zookeeper dnsmasq prometheus prometheus-node-exporter; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    systemctl stop "$svc" >/dev/null 2>&1 || true
  fi
done

stamp=node_modules/.proxymgr-installed
if [ ! -f "$stamp" ] || [ package.json -nt "$stamp" ] || [ package-lock.json -nt "$stamp" ] || [ ! -f agent/native/build/Release/listenfd.node ]; then
  # npm install, not npm ci: the lock file holds this platform's optional packages only (the registry mirror's
  # metadata), which npm ci refuses as "out of sync"; npm install follows the lock and fills that in.
  echo "ensure-deps: npm install" >&2
  npm install --no-audit --no-fund >&2
  touch "$stamp"
fi
