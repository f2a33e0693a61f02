#!/usr/bin/env bash
# Install the Debian packages the tests run for real (sshd, rsync, headless Chromium), if missing.
# Idempotent; root or sudo.
set -euo pipefail
needed=()
command -v rsync >/dev/null || needed+=(rsync)
[ -x /usr/sbin/sshd ] || needed+=(openssh-server)
command -v ssh >/dev/null || needed+=(openssh-client)
[ -x /usr/bin/chromium ] || needed+=(chromium)
[ -x /usr/bin/chromedriver ] || needed+=(chromium-driver)
[ ${#needed[@]} -eq 0 ] && exit 0
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
echo "Installing test services: ${needed[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
