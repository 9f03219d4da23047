#!/usr/bin/env bash
# Stop the one-node SLURM cluster started by scripts/ci_services.sh: slurmd, slurmctld and munged, each by the
# pid it recorded (never by name). Quiet and idempotent.
set -u
stop_pidfile() {
  local f=$1 pid
  [ -s "$f" ] || return 0
  pid=$(cat "$f" 2>/dev/null)
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  fi
  return 0
}
stop_pidfile /run/slurmd.pid
stop_pidfile /run/slurmctld.pid
for f in /run/munge/munged.pid /var/run/munge/munged.pid; do stop_pidfile "$f"; done
echo "slurm_stop: stopped" >&2
