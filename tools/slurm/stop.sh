#!/usr/bin/env bash
# Stop what tools/slurm/start.sh started, by its pid files only (never by name); daemons
# that were running before it (a munged started by the package's install) are left alone.
set -uo pipefail
RUNDIR=/run/slurm
# cancel leftover jobs of this throw-away cluster, so no slurmstepd lingers
if [ -e "$RUNDIR/slurmctld.ours" ] && scontrol ping >/dev/null 2>&1; then
  ids=$(squeue -h -o %A 2>/dev/null || true)
  [ -z "$ids" ] || { scancel $ids; sleep 2; }
fi
stop_pidfile() {  # comm-name pidfile marker
  local name=$1 pidfile=$2 marker=$3 pid
  [ -e "$marker" ] || return 0
  pid=$(cat "$pidfile" 2>/dev/null || true)
  if [ -n "$pid" ] && [ "$(cat /proc/"$pid"/comm 2>/dev/null)" = "$name" ]; then
    kill -TERM "$pid"
    for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
    echo "stopped $name ($pid)"
  fi
  rm -f "$pidfile" "$marker"
}
stop_pidfile slurmd    "$RUNDIR/slurmd.pid"    "$RUNDIR/slurmd.ours"
stop_pidfile slurmctld "$RUNDIR/slurmctld.pid" "$RUNDIR/slurmctld.ours"
stop_pidfile munged    /run/munge/munged.pid   "$RUNDIR/munged.ours"
exit 0
