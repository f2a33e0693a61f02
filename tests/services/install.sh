#!/usr/bin/env bash
# Install the Debian packages the tests run for real (sshd, rsync, headless Chromium), if missing,
# then start the two three-node Slurm test clusters: the host's (22.05) and Debian unstable's (26.05,
# in a chroot). Idempotent: what is installed or running is left alone. Root or sudo.
set -euo pipefail
needed=()
command -v rsync >/dev/null || needed+=(rsync)
[ -x /usr/sbin/sshd ] || needed+=(openssh-server)
command -v ssh >/dev/null || needed+=(openssh-client)
[ -x /usr/bin/chromium ] || needed+=(chromium)
[ -x /usr/bin/chromedriver ] || needed+=(chromium-driver)
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
if [ ${#needed[@]} -gt 0 ]; then
  echo "Installing test services: ${needed[*]}"
  $sudo apt-get -o DPkg::Lock::Timeout=600 update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
fi
repo="$(cd "$(dirname "$0")/../.." && pwd)"
$sudo bash "$repo/slurm/testcluster/setup.sh"
$sudo bash "$repo/slurm/testcluster/sid/setup.sh"
