#!/usr/bin/env bash
# tfoy build entry point.
#   ./build.sh setup                 venv + locked deps + Hadoop jars + data package (cached, idempotent)
#   ./build.sh env [--secure]        shell exports: eval "$(./build.sh env)"
#   ./build.sh hadoop start|stop|status|conf [--secure] [--json]   (--secure: Kerberized, own state and ports)
#   ./build.sh test [pytest args]    setup, start Hadoop, run the whole suite, stop what it started
#   ./build.sh demo [--secure]       the main job on the embedded Hadoop (--secure: on the Kerberized one)
#   ./build.sh bench [name [opts]]   benchmarks/ (all, or one by name, with its options)
#   ./build.sh lint                  ruff
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TFOY_CACHE=${TFOY_CACHE:-$HOME/.cache/tfoy}
export TFOY_HADOOP_STATE=${TFOY_HADOOP_STATE:-$HOME/.tfoy/hadoop}
SECURE_STATE=${TFOY_HADOOP_SECURE_STATE:-$HOME/.tfoy/hadoop-secure}
DATA_DIR=/usr/share/datasets/fashion-mnist

log() { printf '[build.sh] %s\n' "$*" >&2; }
die() { printf '[build.sh] error: %s\n' "$*" >&2; exit 1; }
hash_of() { cat "$@" | sha256sum | cut -c1-12; }  # contents only: every clone shares the cache

VENV="$TFOY_CACHE/venv-py311-$(hash_of "$ROOT/requirements.lock" "$ROOT/requirements-nodeps.lock")"
HADOOP_LIB="$TFOY_CACHE/hadoop-$(hash_of "$ROOT/conf/hadoop/pom.xml")/lib"
AIRFLOW_VENV="$TFOY_CACHE/airflow-$(hash_of "$ROOT/requirements.lock" "$ROOT/requirements-nodeps.lock" "$ROOT/conf/airflow-requirements.txt")"

find_java17() {
  local candidate
  for candidate in "${JAVA_HOME:-}" /usr/lib/jvm/java-17-openjdk-* /usr/lib/jvm/temurin-17-*; do
    [ -n "$candidate" ] && [ -x "$candidate/bin/java" ] || continue
    if "$candidate/bin/java" -version 2>&1 | grep -q 'version "17'; then echo "$candidate"; return 0; fi
  done
  return 1
}

find_python311() {
  local py
  for py in python3.11 python3; do
    if command -v "$py" >/dev/null && "$py" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      command -v "$py"; return 0
    fi
  done
  return 1
}

JAVA_HOME=$(find_java17) || JAVA_HOME=""
export JAVA_HOME

require_tools() {
  [ -n "$JAVA_HOME" ] || die "Java 17 not found (JAVA_HOME or /usr/lib/jvm/java-17-*): install it with 'apt-get install openjdk-17-jdk-headless'"
  command -v mvn >/dev/null || die "Maven (mvn) not found: install it with 'apt-get install maven'"
  find_python311 >/dev/null || die "Python 3.11 not found (python3.11 or python3): install Python 3.11"
}

setup_venv() {
  if [ -f "$VENV/.complete" ]; then
    log "venv cached: $VENV"
  else
    local py; py=$(find_python311)
    log "creating venv $VENV (first run downloads TensorFlow, pyspark, ...: several minutes)"
    # Built in place (venv scripts carry their path); .complete marks it whole, so a broken run is redone.
    rm -rf "$VENV"
    "$py" -m venv "$VENV"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check -r "$ROOT/requirements.lock"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps -r "$ROOT/requirements-nodeps.lock"
    touch "$VENV/.complete"
  fi
  # The project itself: editable, no deps, so a fresh clone re-points the cached venv in a second.
  "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e "$ROOT" >/dev/null
}

setup_airflow() {
  # Airflow only for testing the operator, in its own venv layered on the tfoy venv (its pins stay as they are).
  [ -f "$AIRFLOW_VENV/.complete" ] && return
  log "creating the Airflow test venv $AIRFLOW_VENV"
  rm -rf "$AIRFLOW_VENV"
  "$(find_python311)" -m venv "$AIRFLOW_VENV"
  "$VENV/bin/python" -c 'import site; print(site.getsitepackages()[0])' \
    > "$AIRFLOW_VENV/lib/python3.11/site-packages/tfoy-venv.pth"
  "$AIRFLOW_VENV/bin/pip" install --quiet --disable-pip-version-check -c "$ROOT/requirements.lock" \
    -r "$ROOT/conf/airflow-requirements.txt"
  touch "$AIRFLOW_VENV/.complete"
}

setup_jars() {
  if [ -f "$HADOOP_LIB/.complete" ]; then
    log "Hadoop jars cached: $HADOOP_LIB"
    return
  fi
  log "resolving Hadoop 3.5.0 jars with Maven into $HADOOP_LIB"
  rm -rf "$HADOOP_LIB"
  (cd "$ROOT/conf/hadoop" && mvn -q -B -Dstyle.color=never dependency:copy-dependencies -DincludeScope=runtime \
     -DoutputDirectory="$HADOOP_LIB") || die "Maven could not resolve conf/hadoop/pom.xml (see above)"
  touch "$HADOOP_LIB/.complete"
}

setup_native() {
  # hdfs_io's TensorFlow plugin (C++, seconds), its Rust HDFS reader (cargo: about a minute the first time) and
  # hdfs-native's Python wheel rebuilt with the same patches (about five minutes the first time), all cached under
  # $TFOY_CACHE/native by source hash. Without the first two TensorFlow has no hdfs:// (hdfs_io's readers still
  # stage files), so a failure here is loud; tests/integration/test_hdfs_io_bridge.py then fails.
  command -v g++ >/dev/null || { log "WARNING: g++ not found (apt-get install g++): hdfs_io will stage files"; return; }
  PATH="$PATH:$HOME/.cargo/bin" TFOY_CACHE="$TFOY_CACHE" "$VENV/bin/python" -m hdfs_io.native_build >/dev/null 2>"$TFOY_CACHE/native-build.log" \
    || log "WARNING: building hdfs_io's native parts failed, see $TFOY_CACHE/native-build.log"
}

setup_data() {
  [ -f "$DATA_DIR/train-images-idx3-ubyte.gz" ] && return
  log "installing Debian package dataset-fashion-mnist (real data for examples and tests)"
  if [ "$(id -u)" = 0 ]; then
    apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q dataset-fashion-mnist >/dev/null; }
  else
    sudo apt-get install -y -q dataset-fashion-mnist >/dev/null
  fi
  [ -f "$DATA_DIR/train-images-idx3-ubyte.gz" ] || die "dataset-fashion-mnist did not install $DATA_DIR"
}

setup_kerberos() {
  # MIT Kerberos for the secure embedded cluster (a KDC of its own, kadmin for keytabs) and kinit/klist for users
  command -v kinit >/dev/null && [ -x /usr/sbin/krb5kdc ] && [ -x /usr/sbin/kadmin.local ] && return
  log "installing MIT Kerberos (krb5-kdc krb5-admin-server krb5-user) for the secure embedded cluster"
  local apt=(apt-get install -y -q krb5-kdc krb5-admin-server krb5-user)
  [ "$(id -u)" = 0 ] || apt=(sudo "${apt[@]}")
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null; DEBIAN_FRONTEND=noninteractive "${apt[@]}" >/dev/null; } \
    || die "could not install MIT Kerberos (${apt[*]})"
}

setup_browser() {
  # a real browser for the history page's test (Debian's Chromium, headless)
  command -v chromium >/dev/null && return
  log "installing Debian's chromium (the history page's browser test)"
  local apt=(apt-get install -y -q chromium)
  [ "$(id -u)" = 0 ] || apt=(sudo "${apt[@]}")
  DEBIAN_FRONTEND=noninteractive "${apt[@]}" >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null; DEBIAN_FRONTEND=noninteractive "${apt[@]}" >/dev/null; } \
    || die "could not install chromium (${apt[*]})"
}

cmd_setup() {
  # what the demo needs; `./build.sh test` adds what only the tests use (the Airflow venv, a browser)
  require_tools
  local t0=$SECONDS
  setup_jars
  setup_venv
  setup_data
  setup_kerberos
  setup_native
  log "setup done in $((SECONDS - t0))s"
}

cmd_setup_tests() {
  cmd_setup
  setup_airflow
  setup_browser
}

print_env() {
  cat <<EOF
export JAVA_HOME='$JAVA_HOME'
export TFOY_HADOOP_LIB='$HADOOP_LIB'
export TFOY_HADOOP_STATE='$TFOY_HADOOP_STATE'
export HADOOP_CONF_DIR='${TFOY_HADOOP_CONF_DIR:-$TFOY_HADOOP_STATE/conf}'
export VIRTUAL_ENV='$VENV'
export TFOY_AIRFLOW_PYTHON='$AIRFLOW_VENV/bin/python'
export SPARK_LOCAL_IP=\${SPARK_LOCAL_IP:-127.0.0.1}
export PATH='$VENV/bin:$ROOT/embedded_hadoop/bin':"\$PATH"
EOF
  if [ "${1:-}" = --secure ]; then
    cat <<EOF
export KRB5_CONFIG='$TFOY_HADOOP_STATE/kerberos/krb5.conf'
# a ticket for you (realm TFOY.TEST; the second user's keytab is tfoy-other.keytab):
#   kinit -kt '$TFOY_HADOOP_STATE/keytabs/$(id -un).keytab' $(id -un)@TFOY.TEST
EOF
  fi
}

load_env() { eval "$(print_env)"; }

wants_secure() { local a; for a in "$@"; do [ "$a" = --secure ] && return 0; done; return 1; }

hadoop_ctl() {
  if wants_secure "$@"; then export TFOY_HADOOP_STATE=$SECURE_STATE; fi
  load_env
  [ -f "$HADOOP_LIB/.complete" ] || die "Hadoop jars missing; run ./build.sh setup"
  python3 "$ROOT/embedded_hadoop/cluster.py" "$@"
}

cmd_test() {
  cmd_setup_tests
  load_env
  local started_here=0
  if ! hadoop_ctl status >/dev/null 2>&1; then
    hadoop_ctl start
    started_here=1
  fi
  [ $started_here = 1 ] && trap 'hadoop_ctl stop' EXIT
  cd "$ROOT"
  log "ruff"
  ruff check .
  log "pytest"
  python -m pytest --durations=20 "$@"  # the slowest tests, for keeping the suite within its 40 minutes
}

cmd_demo() {
  cmd_setup
  local args=() a
  for a in "$@"; do [ "$a" = --secure ] || args+=("$a"); done
  if wants_secure "$@"; then
    # the Kerberized embedded cluster, and a ticket for you from your keytab (what `kinit` does on an edge node)
    hadoop_ctl start --secure
    load_env
    export KRB5_CONFIG="$TFOY_HADOOP_STATE/kerberos/krb5.conf"
    export KRB5CCNAME="FILE:$TFOY_HADOOP_STATE/kerberos/demo.ccache"
    kinit -kt "$TFOY_HADOOP_STATE/keytabs/$(id -un).keytab" "$(id -un)@TFOY.TEST"
  else
    load_env
    hadoop_ctl start
  fi
  cd "$ROOT"
  python -m examples.demo "${args[@]}"
}

usage() { sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//'; }

cmd_bench() {
  # the name is checked before minutes of setup and a Hadoop start
  if [ $# -gt 0 ] && ! compgen -G "$ROOT/benchmarks/$1.py" >/dev/null; then
    die "no benchmark benchmarks/$1.py (there are: $(cd "$ROOT/benchmarks" && ls ./*.py | sed 's|^./||; s|\.py$||' | tr '\n' ' '))"
  fi
  cmd_setup
  load_env
  hadoop_ctl start
  cd "$ROOT"
  local b
  local name=${1:-*}
  [ $# -gt 0 ] && shift  # the rest are the benchmark's own options (--repeats 21, --no-csv, …)
  for b in benchmarks/${name}.py; do
    [ -f "$b" ] || die "no benchmark $b"
    log "benchmark $b"
    python "$b" "$@"
  done
}

case "${1:-}" in
  setup) cmd_setup ;;
  env) shift
    for a in "$@"; do [ "$a" = --secure ] || die "env: unknown option $a (env takes --secure only)"; done
    if wants_secure "$@"; then TFOY_HADOOP_STATE=$SECURE_STATE; fi; print_env "$@" ;;
  hadoop) shift; [ $# -ge 1 ] || die "usage: ./build.sh hadoop start|stop|status|conf [--secure] [--json]"
    hadoop_ctl "$@" ;;
  test) shift; cmd_test "$@" ;;
  demo) shift; cmd_demo "$@" ;;
  bench) shift; cmd_bench "$@" ;;
  lint) load_env; cd "$ROOT" && ruff check . ;;
  -h|--help|help) usage ;;
  "") usage >&2; exit 2 ;;
  *) printf '[build.sh] error: unknown command %s\n' "$1" >&2; usage >&2; exit 2 ;;
esac
