#!/usr/bin/env bash
# Optional services for the tests, started by .ci/run before the test command. Each section is independent:
# a failure prints a note and the tests that need that service skip with a clear reason.

# --- chromium (headless) for tests/test_atlas_browser.py, driven by the python 'playwright' package (a test
# dependency in pyproject.toml); Debian's browser is used because playwright cannot download its own here.
if ! command -v chromium >/dev/null 2>&1; then
  (export DEBIAN_FRONTEND=noninteractive; apt-get update -qq && apt-get install -y -qq chromium >/dev/null) \
    || echo "ci_services: chromium could not be installed; the atlas browser test will skip" >&2
fi
command -v chromium >/dev/null 2>&1 && echo "ci_services: $(chromium --version 2>/dev/null | head -1)"
true

# --- SLURM: a real one-node cluster for tests/test_slurm.py. Functions, so the section can also be
# sourced; idempotent, quiet (details in $CI_SERVICES_LOG), never fails the caller.
CI_SERVICES_LOG=${CI_SERVICES_LOG:-/tmp/inrlens-ci-services.log}
_note() { echo "ci_services: $*" >&2; }
_quiet() { "$@" >>"$CI_SERVICES_LOG" 2>&1; }
# ------------------------------------------------------------------------------------------------- SLURM
# A real single-node SLURM cluster on localhost (Debian's slurm-wlm + munge) for tests/test_slurm.py.
# Stop it with scripts/slurm_stop.sh.
slurm_up() { command -v sinfo >/dev/null 2>&1 && timeout 10 sinfo -h -o '%T' 2>/dev/null | grep -Eq '^(idle|mixed|allocated)'; }

start_slurm() {
  if slurm_up; then _note "slurm: already running"; return 0; fi
  if [ "$(id -u)" != 0 ]; then _note "slurm: not root; skipped (SLURM tests will skip)"; return 0; fi
  if ! command -v slurmctld >/dev/null 2>&1 || ! command -v slurmd >/dev/null 2>&1 || ! command -v sbatch >/dev/null 2>&1 \
     || ! command -v munged >/dev/null 2>&1; then
    command -v apt-get >/dev/null 2>&1 || { _note "slurm: no apt-get; skipped"; return 0; }
    _quiet apt-get update -qq || true
    DEBIAN_FRONTEND=noninteractive _quiet apt-get install -y -qq slurmctld slurmd slurm-client munge \
      || { _note "slurm: install failed (see $CI_SERVICES_LOG)"; return 0; }
  fi
  # munge: one key, its directories owned by munge, the daemon running as munge
  if [ ! -s /etc/munge/munge.key ]; then
    mkdir -p /etc/munge
    dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
  fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /etc/munge /etc/munge/munge.key /run/munge /var/log/munge /var/lib/munge
  chmod 400 /etc/munge/munge.key
  chmod 700 /etc/munge
  if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    _quiet su -s /bin/sh munge -c /usr/sbin/munged || { _note "slurm: munged did not start"; return 0; }
  fi
  munge -n 2>/dev/null | unmunge 2>/dev/null | grep -q Success || { _note "slurm: munge does not authenticate"; return 0; }
  # slurm.conf for this host
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(( $(awk '/MemTotal/ {print int($2/1024)}' /proc/meminfo) - 1024 ))
  [ "$mem" -gt 512 ] || mem=512
  mkdir -p /etc/slurm /var/spool/slurmd /var/spool/slurmctld /var/log/slurm
  cat >/etc/slurm/slurm.conf <<EOF
# written by inrlens scripts/ci_services.sh: one-node test cluster
ClusterName=local
SlurmctldHost=${host}
AuthType=auth/munge
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SlurmUser=root
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmdSpoolDir=/var/spool/slurmd
StateSaveLocation=/var/spool/slurmctld
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
MpiDefault=none
NodeName=${host} CPUs=${cpus} RealMemory=${mem} State=UNKNOWN
PartitionName=debug Nodes=${host} Default=YES MaxTime=INFINITE State=UP
EOF
  pgrep -x slurmctld >/dev/null 2>&1 || _quiet slurmctld || { _note "slurm: slurmctld did not start"; return 0; }
  pgrep -x slurmd >/dev/null 2>&1 || _quiet slurmd || { _note "slurm: slurmd did not start"; return 0; }
  local i
  for i in $(seq 1 30); do
    if slurm_up; then _note "slurm: one-node cluster up (${host}, ${cpus} CPUs)"; return 0; fi
    sleep 1
  done
  _quiet scontrol update nodename="${host}" state=resume || true
  slurm_up && { _note "slurm: one-node cluster up"; return 0; }
  _note "slurm: node not idle after 30 s (see /var/log/slurm)"
  return 0
}

start_slurm || true
true
