#!/usr/bin/env bash
# Start a throw-away one-node SLURM cluster (munged, slurmctld, slurmd) on this host, for
# trying examples/slurm/ and for CI's tests/slurm.rs: no systemd, no cgroups, run as root.
# It overwrites /etc/slurm/slurm.conf. Stop it with tools/slurm/stop.sh.
# Debian 12: apt-get install -y --no-install-recommends slurmctld slurmd slurm-client munge
set -euo pipefail
NODE="${SLURM_NODE_NAME:-$(hostname -s)}"
RUNDIR=/run/slurm                 # pid files + "started by us" markers
T0=$(date +%s%N)
for b in munged slurmctld slurmd sinfo; do command -v $b >/dev/null ||
  { echo "no $b: apt-get install -y slurmctld slurmd slurm-client munge" >&2; exit 1; }; done
[ ! -e "$RUNDIR/slurmctld.ours" ] || { echo "already started; run tools/slurm/stop.sh first" >&2; exit 1; }
mkdir -p "$RUNDIR" /var/spool/slurmctld /var/spool/slurmd /var/log/slurm

# munge: key owned by munge, mode 0400; the daemon runs as the munge user
install -d -o munge -g munge -m 0755 /run/munge
install -d -o munge -g munge -m 0700 /var/lib/munge /var/log/munge /etc/munge
[ -s /etc/munge/munge.key ] || mungekey --create --keyfile=/etc/munge/munge.key
chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
  runuser -u munge -- munged      # forks; pid in /run/munge/munged.pid
  touch "$RUNDIR/munged.ours"
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break; sleep 0.1; done
  munge -n | unmunge >/dev/null || { echo "munged did not start" >&2; exit 1; }
fi

# slurm.conf; hardware (CPUs, sockets, cores, RealMemory) as slurmd -C measures it
HW=$(slurmd -C | head -1 | sed -E 's/^NodeName=[^ ]+ //')
# (defaults kept: auth/cred munge, sched/backfill, no accounting, MpiDefault=none)
cat > /etc/slurm/slurm.conf <<CONF
ClusterName=localci
SlurmctldHost=${NODE}(127.0.0.1)
SlurmUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerParameters=batch_sched_delay=0
MailProg=/bin/true
ReturnToService=2
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=${RUNDIR}/slurmctld.pid
SlurmdPidFile=${RUNDIR}/slurmd.pid
SlurmctldLogFile=/var/log/slurm/slurmctld.log
SlurmdLogFile=/var/log/slurm/slurmd.log
NodeName=${NODE} NodeAddr=127.0.0.1 ${HW} State=UNKNOWN
PartitionName=debug Nodes=${NODE} Default=YES MaxTime=INFINITE State=UP
CONF

slurmctld -c                      # forks; -c: start with an empty job list
touch "$RUNDIR/slurmctld.ours"
slurmd -N "$NODE"                 # forks
touch "$RUNDIR/slurmd.ours"
for _ in $(seq 120); do           # wait (at most 60 s) until the node is idle
  st=$(sinfo -h -N -n "$NODE" -o '%T' 2>/dev/null || true)
  [ "$st" = idle ] && break; sleep 0.5
done
if [ "$st" != idle ]; then
  echo "node $NODE not idle (state '$st')" >&2
  tail -n 20 /var/log/slurm/slurmctld.log /var/log/slurm/slurmd.log >&2; exit 1
fi
echo "slurm up: node $NODE idle after $(( ($(date +%s%N) - T0) / 1000000 )) ms"
