#!/usr/bin/env bash
# Make sure PostgreSQL, Redis and RabbitMQ answer on loopback.
# Each one that does not answer is started if installed, or installed with apt
# (as root, or with password-less sudo) and then started. If neither is possible,
# stop with a message naming exactly what is missing. Idempotent.
set -euo pipefail

PG_PORT=${PG_PORT:-5432}
REDIS_PORT=${REDIS_PORT:-6379}
AMQP_PORT=${AMQP_PORT:-5672}

say() { printf '[services] %s\n' "$*"; }
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@";
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@";
  else return 1; fi
}

APT_UPDATED=""
apt_install() {
  command -v apt-get >/dev/null || return 1
  if [ -z "$APT_UPDATED" ]; then as_root apt-get update -qq || return 1; APT_UPDATED=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null || return 1
}

wait_for() {  # name port seconds
  local i
  for ((i = 0; i < $3 * 2; i++)); do answers "$2" && return 0; sleep 0.5; done
  return 1
}

missing() {
  echo "ERROR: $1 is not answering on 127.0.0.1:$2 and could not be $3." >&2
  echo "       Install it ($4) and start it, or point the settings at a running one." >&2
  exit 1
}

install_if_missing() {  # command package name port
  command -v "$1" >/dev/null && return 0
  say "$3 not installed: installing $2 with apt"
  apt_install "$2" || missing "$3" "$4" installed "apt-get install $2"
}

ensure_postgres() {
  answers "$PG_PORT" && return 0
  local fresh=""
  if ! command -v pg_ctlcluster >/dev/null; then
    say "PostgreSQL not installed: installing with apt"
    apt_install postgresql postgresql-contrib || missing PostgreSQL "$PG_PORT" installed "apt-get install postgresql"
    fresh=1
  fi
  local version
  version=$(ls /etc/postgresql | sort -V | tail -n 1)
  if [ -n "$fresh" ]; then
    # Local development: let the postgres role connect over loopback without a password.
    local hba="/etc/postgresql/$version/main/pg_hba.conf"
    if ! grep -q "marquee: local trust" "$hba"; then
      as_root sed -i "1i host all postgres 127.0.0.1/32 trust # marquee: local trust\nhost all postgres ::1/128 trust # marquee: local trust" "$hba"
    fi
  fi
  say "starting PostgreSQL $version"
  as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
  wait_for PostgreSQL "$PG_PORT" 30 || missing PostgreSQL "$PG_PORT" started "pg_ctlcluster $version main start"
}

ensure_redis() {
  answers "$REDIS_PORT" && return 0
  install_if_missing redis-server redis-server Redis "$REDIS_PORT"
  say "starting Redis"
  as_root mkdir -p /var/lib/redis /var/log/redis
  as_root redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" --save "" \
    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/marquee.log
  wait_for Redis "$REDIS_PORT" 15 || missing Redis "$REDIS_PORT" started "redis-server --daemonize yes"
}

ensure_rabbitmq() {
  answers "$AMQP_PORT" && return 0
  install_if_missing rabbitmq-server rabbitmq-server RabbitMQ "$AMQP_PORT"
  say "starting RabbitMQ (this takes a few seconds)"
  as_root rabbitmq-server -detached || true
  wait_for RabbitMQ "$AMQP_PORT" 90 || missing RabbitMQ "$AMQP_PORT" started "rabbitmq-server -detached"
}

ensure_postgres
ensure_redis
ensure_rabbitmq
say "PostgreSQL :$PG_PORT, Redis :$REDIS_PORT and RabbitMQ :$AMQP_PORT answer"
