#!/usr/bin/env sh
# Writes the secret files docker-compose.yml mounts (./secrets, never committed): a random PostgreSQL password and
# the database URL holding it, plus empty exchange key files to fill in before paper or live trading. Existing
# files are kept, so running it again never changes a password the database already uses.
set -eu
cd "$(dirname "$0")/.."
umask 077
mkdir -p secrets
chmod 700 secrets
if [ ! -s secrets/postgres_password ]; then
  # 32 characters from [A-Za-z0-9]: safe inside a URL without escaping.
  LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 32 >secrets/postgres_password
fi
if [ ! -s secrets/database_url ]; then
  printf 'postgres://mcbot:%s@postgres:5432/mcbot' "$(cat secrets/postgres_password)" >secrets/database_url
fi
for f in binance_api_key binance_api_secret; do
  [ -e "secrets/$f" ] || : >"secrets/$f"
done
# Compose mounts each file as it is on the host; the containers run as other users (mcbot 10001, postgres,
# grafana) and must read them. The directory itself stays closed to other host users.
chmod 644 secrets/postgres_password secrets/database_url secrets/binance_api_key secrets/binance_api_secret
echo "secrets ready in $(pwd)/secrets (fill binance_api_key and binance_api_secret for paper or live)"
