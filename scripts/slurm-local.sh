#!/usr/bin/env bash
# A one-node Slurm on this machine, for the tests of the job templates against a real scheduler:
#
#     bash scripts/slurm-local.sh start [DIR]    install (Debian, as root) if missing, then start
#     bash scripts/slurm-local.sh stop [DIR]     stop the daemons this script started in DIR
#     bash scripts/slurm-local.sh status [DIR]   say what runs; exit 0 when the node takes jobs
#
# DIR (default $MPITRAIN_SLURM_DIR, else /tmp/mpitrain-slurm) holds everything: slurm.conf, the
# munge key and socket, state, spool, logs, PID files, and `env`, to be sourced by a shell that
# submits (it sets SLURM_CONF). Nothing under /etc or /run is written; the packages are the only
# change outside DIR. Running `start` twice is fine: daemons that answer are left alone.
#
# Settings for a container without systemd or cgroups, taken from bringing it up on Debian 12
# (Slurm 22.05): no cgroup plugins (proctrack/linuxproc, task/none, jobacct_gather/none); the
# node is `localhost` at 127.0.0.1 (the host name need not resolve); it declares
# $MPITRAIN_SLURM_CPUS CPUs (default 8) whatever the machine has (SlurmdParameters=
# config_overrides), so that two 4-rank jobs run at once on 2 cores, and $MPITRAIN_SLURM_GPUS
# stand-in GPUs (default 4; device files that are the null device, so the gpu template can be
# scheduled; nothing computes on them); daemons and jobs run as root; MpiDefault=none, so a
# template must ask srun for its PMI (--mpi=pmi2 for MPICH). Ports: $MPITRAIN_SLURM_PORT
# (default 6817) for slurmctld and the next one for slurmd. To change a setting: stop, start.
set -euo pipefail

action=${1:-start}
dir=${2:-${MPITRAIN_SLURM_DIR:-/tmp/mpitrain-slurm}}
cpus=${MPITRAIN_SLURM_CPUS:-8}
gpus=${MPITRAIN_SLURM_GPUS:-4}
port=${MPITRAIN_SLURM_PORT:-6817}
packages=(slurmctld slurmd slurm-client munge)

say() { echo "slurm-local: $*" >&2; }
die() { say "error: $*"; exit 1; }

# munged writes its PID file into its own folder (munge checks who owns the folders it uses).
pid_file() { if [ "$1" = munged ]; then echo "$dir/munge/munged.pid"; else echo "$dir/run/$1.pid"; fi; }

# The PID in FILE when that process is alive and is the daemon NAME this script started with DIR.
ours() {
    local file=$1 name=$2 pid
    [ -s "$file" ] || return 1
    pid=$(cat "$file")
    [ -r "/proc/$pid/cmdline" ] || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -q -- "$name.*$dir/" || return 1
    echo "$pid"
}

install_packages() {
    local missing=()
    command -v slurmctld >/dev/null || missing+=(slurmctld)
    command -v slurmd >/dev/null || missing+=(slurmd)
    command -v sbatch >/dev/null || missing+=(slurm-client)
    command -v munged >/dev/null || missing+=(munge)
    [ "${#missing[@]}" -eq 0 ] && return 0
    [ "$(id -u)" -eq 0 ] || die "missing ${missing[*]}: run as root to install ${packages[*]}"
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
    say "installing ${packages[*]}"
    local started=$SECONDS
    local try
    for try in 1 2 3; do  # a mirror that hiccups once should not fail the run
        apt-get update -qq && break
        [ "$try" -eq 3 ] && die "apt-get update failed 3 times (no network to the package mirrors?)"
        sleep 10
    done
    # The packages' scripts try to start the daemons; without systemd that is refused, harmlessly.
    for try in 1 2 3; do
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null \
            && break
        [ "$try" -eq 3 ] && die "apt-get install ${packages[*]} failed 3 times"
        sleep 10
    done
    say "installed in $((SECONDS - started)) s"
}

write_config() {
    mkdir -p "$dir"/{etc,state,spool,log,run,munge}
    chown munge:munge "$dir/munge"
    chmod 0755 "$dir/munge"  # munged: others need execute to reach the socket
    if [ ! -s "$dir/munge/munge.key" ]; then
        runuser -u munge -- mungekey --create --keyfile="$dir/munge/munge.key" >/dev/null
    fi
    # Stand-in GPUs: character devices that are the null device (slurmd wants device files), so
    # that the gpu template's --gpus-per-task=1 can be scheduled; the ranks compute on the CPU.
    local gres=""
    if [ "$gpus" -gt 0 ]; then
        mkdir -p "$dir/dev"
        for ((i = 0; i < gpus; i++)); do
            [ -c "$dir/dev/gpu$i" ] || mknod "$dir/dev/gpu$i" c 1 3 2>/dev/null || { gpus=0; break; }
        done
    fi
    if [ "$gpus" -gt 0 ]; then
        gres="Gres=gpu:$gpus"
        echo "NodeName=localhost Name=gpu File=$dir/dev/gpu[0-$((gpus - 1))]" >"$dir/etc/gres.conf"
    else
        say "no stand-in GPUs (mknod refused or MPITRAIN_SLURM_GPUS=0): the gpu template cannot be scheduled"
        : >"$dir/etc/gres.conf"
    fi
    cat >"$dir/etc/slurm.conf" <<EOF
# written by scripts/slurm-local.sh: a one-node cluster for tests
ClusterName=mpitrain-local
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort=$port
SlurmdPort=$((port + 1))
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$dir/munge/munge.socket
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SwitchType=switch/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SlurmdParameters=config_overrides
ReturnToService=2
MinJobAge=600
KillWait=5
InactiveLimit=0
GresTypes=gpu
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$cpus $gres State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
    echo "export SLURM_CONF=$dir/etc/slurm.conf" >"$dir/env"
}

node_ready() {
    local state
    state=$(SLURM_CONF="$dir/etc/slurm.conf" timeout 10 sinfo -h -n localhost -o %t 2>/dev/null) || return 1
    case "$state" in idle*|mix*|alloc*) return 0 ;; *) return 1 ;; esac
}

start() {
    local started=$SECONDS
    install_packages
    write_config
    local conf=$dir/etc/slurm.conf
    if ! ours "$(pid_file munged)" munged >/dev/null; then
        runuser -u munge -- munged --socket="$dir/munge/munge.socket" --key-file="$dir/munge/munge.key" \
            --pid-file="$dir/munge/munged.pid" --log-file="$dir/munge/munged.log" \
            --seed-file="$dir/munge/munged.seed" || die "munged did not start: see $dir/munge/munged.log"
    fi
    if ! ours "$dir/run/slurmctld.pid" slurmctld >/dev/null; then
        slurmctld -f "$conf" || die "slurmctld did not start: see $dir/log/slurmctld.log"
    fi
    if ! ours "$dir/run/slurmd.pid" slurmd >/dev/null; then
        slurmd -f "$conf" -N localhost || die "slurmd did not start: see $dir/log/slurmd.log"
    fi
    local deadline=$((SECONDS + 60))
    until node_ready; do
        if [ "$SECONDS" -ge "$deadline" ]; then
            SLURM_CONF=$conf sinfo -N -l >&2 || true
            tail -n 20 "$dir/log/slurmctld.log" "$dir/log/slurmd.log" >&2 || true
            die "the node did not become idle within 60 s"
        fi
        # a node left DOWN by an earlier run of the daemons is put back to work
        SLURM_CONF=$conf scontrol update NodeName=localhost State=RESUME >/dev/null 2>&1 || true
        sleep 0.5
    done
    say "ready in $((SECONDS - started)) s: source $dir/env (SLURM_CONF=$conf)"
}

stop() {
    local name pid jobs
    # the jobs first (this cluster is ours alone), so that no rank outlives the daemons
    if ours "$dir/run/slurmctld.pid" slurmctld >/dev/null; then
        jobs=$(SLURM_CONF="$dir/etc/slurm.conf" timeout 10 squeue -h -o %A 2>/dev/null || true)
        if [ -n "$jobs" ]; then
            # shellcheck disable=SC2086  # one job id a word
            SLURM_CONF="$dir/etc/slurm.conf" scancel $jobs || true
            for _ in $(seq 30); do
                [ -z "$(SLURM_CONF="$dir/etc/slurm.conf" squeue -h -o %A 2>/dev/null)" ] && break
                sleep 0.5
            done
        fi
    fi
    for name in slurmd slurmctld munged; do
        if pid=$(ours "$(pid_file "$name")" "$name"); then
            kill "$pid"
            for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
            kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
            say "stopped $name ($pid)"
        fi
    done
}

status() {
    local name pid
    for name in munged slurmctld slurmd; do
        if pid=$(ours "$(pid_file "$name")" "$name"); then say "$name: running ($pid)"; else say "$name: not running"; fi
    done
    if node_ready; then say "node localhost takes jobs (SLURM_CONF=$dir/etc/slurm.conf)"; else say "node not ready"; return 1; fi
}

case "$action" in
    start) start ;;
    stop) stop ;;
    status) status ;;
    *) die "unknown action '$action': start, stop or status" ;;
esac
