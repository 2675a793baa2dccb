#!/usr/bin/env bash
# Make the services StoreFlow's tests and a real deployment need available on this machine:
# PostgreSQL with TimescaleDB (built from Debian trixie's Apache-2 source package) and Mosquitto.
# Idempotent: re-running does nothing when everything is already in place.
set -uo pipefail

fail=0
say() { printf 'services: %s\n' "$*"; }
problem() { printf 'services: FAILED: %s\n' "$*" >&2; fail=1; }

PG_VERSION=${PG_VERSION:-$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n1)}
PG_HOST=${PG_HOST:-127.0.0.1}
PG_PORT=${PG_PORT:-5432}
MQTT_PORT=${MQTT_PORT:-1883}
BUILD_DIR=${TIMESCALEDB_BUILD_DIR:-/var/cache/storeflow/timescaledb}
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"

psql_q() { psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -XAtqc "$1" 2>/dev/null; }

pg_up() { pg_isready -h "$PG_HOST" -p "$PG_PORT" -q 2>/dev/null; }

ensure_postgres() {
    if [ -z "$PG_VERSION" ]; then
        problem "no PostgreSQL cluster found in /etc/postgresql; install it with: apt-get install postgresql"
        return 1
    fi
    if ! pg_up; then
        say "starting PostgreSQL $PG_VERSION"
        $SUDO pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" main start 2>/dev/null || true
        for _ in $(seq 1 30); do pg_up && break; sleep 0.5; done
    fi
    pg_up || { problem "PostgreSQL is not answering on $PG_HOST:$PG_PORT; start it with: pg_ctlcluster $PG_VERSION main start"; return 1; }
    say "PostgreSQL $PG_VERSION is up on $PG_HOST:$PG_PORT"
}

timescaledb_installed() {
    local pg_config=/usr/lib/postgresql/$PG_VERSION/bin/pg_config
    [ -f "$($pg_config --sharedir)/extension/timescaledb.control" ]
}

build_timescaledb() {
    local pg_config=/usr/lib/postgresql/$PG_VERSION/bin/pg_config
    say "building TimescaleDB (Apache-2 edition) from Debian trixie's source package against $pg_config"
    local src_list=/etc/apt/sources.list.d/storeflow-trixie-src.sources
    if [ ! -f "$src_list" ]; then
        $SUDO tee "$src_list" >/dev/null <<'SRC'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    fi
    $SUDO apt-get update -qq >/dev/null 2>&1 || { problem "apt-get update failed; check network access to Debian's mirrors"; return 1; }
    $SUDO apt-get install -y -qq --no-install-recommends "postgresql-server-dev-$PG_VERSION" cmake gcc make \
        libssl-dev dpkg-dev >/dev/null 2>&1 \
        || { problem "could not install build dependencies (postgresql-server-dev-$PG_VERSION cmake gcc libssl-dev dpkg-dev)"; return 1; }
    $SUDO mkdir -p "$BUILD_DIR"
    (
        set -e
        cd "$BUILD_DIR"
        rm -rf src build
        apt-get source -qq --download-only timescaledb >/dev/null 2>&1
        dpkg-source -x "$(ls -1 timescaledb_*.dsc | sort -V | tail -n1)" src >/dev/null 2>&1
        # The flags mirror the package's own debian/rules: Apache-2 only, no telemetry.
        cmake -S src -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DPG_CONFIG="$pg_config" \
            -DAPACHE_ONLY=1 -DSEND_TELEMETRY_DEFAULT=OFF -DUSE_TELEMETRY=OFF -DREGRESS_CHECKS=OFF \
            -DTAP_CHECKS=OFF -DWARNINGS_AS_ERRORS=OFF >/dev/null 2>&1
        cmake --build build -j"$(nproc)" >/dev/null
        $SUDO cmake --install build >/dev/null
    ) || { problem "TimescaleDB build failed; see $BUILD_DIR and rerun with bash -x scripts/services.sh"; return 1; }
}

ensure_timescaledb() {
    if ! timescaledb_installed; then
        build_timescaledb || return 1
    else
        say "TimescaleDB extension files already installed"
    fi
    local conf=/etc/postgresql/$PG_VERSION/main/conf.d/50-timescaledb.conf
    if [ ! -f "$conf" ]; then
        printf "shared_preload_libraries = 'timescaledb'\ntimescaledb.telemetry_level = off\n" | $SUDO tee "$conf" >/dev/null
    fi
    if [ "$(psql_q 'SHOW shared_preload_libraries')" != "timescaledb" ] && ! psql_q 'SHOW shared_preload_libraries' | grep -q timescaledb; then
        say "restarting PostgreSQL to load timescaledb"
        $SUDO pg_ctlcluster --skip-systemctl-redirect "$PG_VERSION" main restart \
            || { problem "PostgreSQL restart failed; see /var/log/postgresql/postgresql-$PG_VERSION-main.log"; return 1; }
        for _ in $(seq 1 30); do pg_up && break; sleep 0.5; done
    fi
    local probe_db=storeflow_tsdb_probe
    psql_q "DROP DATABASE IF EXISTS $probe_db" >/dev/null
    psql_q "CREATE DATABASE $probe_db" >/dev/null
    if psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d "$probe_db" -XAtqc "CREATE EXTENSION timescaledb" >/dev/null 2>&1; then
        say "TimescaleDB $(psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d "$probe_db" -XAtqc "SELECT extversion FROM pg_extension WHERE extname='timescaledb'") works (CREATE EXTENSION timescaledb ok)"
    else
        problem "CREATE EXTENSION timescaledb failed; check shared_preload_libraries in $conf and the server log"
    fi
    psql_q "DROP DATABASE IF EXISTS $probe_db" >/dev/null
}

mqtt_up() { (exec 3<>"/dev/tcp/127.0.0.1/$MQTT_PORT") 2>/dev/null; }

ensure_mosquitto() {
    if ! mqtt_up; then
        if ! command -v mosquitto >/dev/null; then
            $SUDO apt-get install -y -qq mosquitto >/dev/null 2>&1 || { problem "Mosquitto is not installed; install it with: apt-get install mosquitto"; return 1; }
        fi
        say "starting Mosquitto"
        $SUDO mosquitto -d -c /etc/mosquitto/mosquitto.conf 2>/dev/null || true
        for _ in $(seq 1 20); do mqtt_up && break; sleep 0.25; done
    fi
    mqtt_up || { problem "Mosquitto is not answering on 127.0.0.1:$MQTT_PORT; start it with: mosquitto -d -c /etc/mosquitto/mosquitto.conf"; return 1; }
    say "Mosquitto is up on 127.0.0.1:$MQTT_PORT"
}

ensure_chromium() {
    # Browser tests of the dashboard drive Debian's Chromium (no browser download at test time).
    if command -v chromium >/dev/null; then
        say "Chromium is installed ($(command -v chromium))"
        return 0
    fi
    say "installing Chromium for the dashboard's browser tests"
    { $SUDO apt-get update -qq && $SUDO apt-get install -y -qq chromium; } >/dev/null 2>&1 \
        || { problem "could not install Chromium; install it with: apt-get install chromium"; return 1; }
}

ensure_postgres && ensure_timescaledb
ensure_mosquitto
ensure_chromium
exit $fail
