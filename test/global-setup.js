// Records the processes of the kinds tests start (HAProxy, ZooKeeper, dnsmasq, the proxymgr CLI) that already run,
// so global-teardown.js can tell which ones a test left behind.
const { readdirSync, readFileSync, writeFileSync } = require('node:fs');
const { tmpdir } = require('node:os');
const path = require('node:path');

const KINDS = /(^|\/)haproxy\s|ZooKeeperServerMain|(^|\/)dnsmasq\s|dist\/bin\/proxymgr\.js/;

function ours() {
  const out = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    let cmd;
    try {
      cmd = readFileSync(`/proc/${entry}/cmdline`, 'utf8').split('\0').join(' ');
    } catch {
      continue;
    }
    if (KINDS.test(cmd)) out.push({ pid: Number(entry), cmd });
  }
  return out;
}

module.exports = async () => {
  writeFileSync(path.join(tmpdir(), `proxymgr-jest-${process.pid}.json`), JSON.stringify(ours().map((p) => p.pid)));
};
module.exports.ours = ours;
