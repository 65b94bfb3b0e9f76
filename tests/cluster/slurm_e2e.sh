#!/usr/bin/env bash
# The SLURM profile against a real scheduler: a throwaway one-node SLURM cluster (slurmctld,
# slurmd with a fake GPU, slurmdbd on a private MariaDB, munge) built from Debian packages in a
# temporary folder, and the workflow run through profiles/slurm on it:
#
#   a  the tiny study ends with its tables; every fold ran as its own SLURM job with the study's
#      threads, memory and time limit; local rules ran locally; a profile whose placeholders are
#      left in stops before submitting anything and names them
#   b  with resources.gpu: true the folds ask SLURM for a GPU (gres/gpu in scontrol show job)
#   c  a fold preempted (requeue) and a fold cancelled (scancel) mid-training both end: the
#      requeued job and Snakemake's retry resume the saved state, the metrics equal uninterrupted
#      runs of the same folds, and `seconds` adds up both runs
#   d  a fold that fails for good (an image truncated after the data checks) is tried as often as
#      the profile says, then stops the run: its error in Snakemake's output, each SLURM log naming
#      the failed fold and its log, nothing left in results/folds
#
# Usage (from any folder, with the Python environment holding ageest and snakemake active):
#   bash tests/cluster/slurm_e2e.sh
# As root it installs what is missing with apt-get (slurm-wlm slurmdbd munge mariadb-server) and
# pip (snakemake-executor-plugin-slurm); otherwise it says what to install and exits 2. Every
# daemon it starts is stopped by its PID at the end, pass or fail, and its temporary folder is
# removed (SLURM_E2E_KEEP=1 keeps the folder for a look). SLURM_E2E_TESTS="a c" runs a subset.
# What only this toy cluster needs (private ports, job comments in the accounting, JobRequeue=0 so
# that only the profile's --requeue requeues, fast status polling) lives here, not in profiles/slurm.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TESTS=${SLURM_E2E_TESTS:-a b c d}
PY=$(command -v python || command -v python3)
T0=$(date +%s.%N)

say() { printf '[slurm-e2e %6.1fs] %s\n' "$(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{print b-a}')" "$*"; }
die() { say "ERROR: $*" >&2; exit 1; }
secs_since() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.0f", b-a}'; }

# --- 1. what it needs ---------------------------------------------------------------------------

PKGS=(slurm-wlm slurmdbd munge mariadb-server)
CMDS=(slurmctld slurmd slurmdbd sbatch sacct sacctmgr scontrol munged mariadbd mariadb-install-db)
[[ $(id -u) == 0 ]] || { echo "slurm_e2e.sh needs root: it starts slurmd, which runs jobs as root here, and installs" \
    "what is missing with apt-get (Debian packages ${PKGS[*]})" >&2; exit 2; }
export PATH=$PATH:/usr/sbin:/sbin
missing=()
for c in "${CMDS[@]}"; do command -v "$c" >/dev/null || missing+=("$c"); done
if ((${#missing[@]})); then
    if command -v apt-get >/dev/null; then
        say "installing ${PKGS[*]} (missing: ${missing[*]})"
        # No service may start during the install (on machines with an init system): this test
        # starts its own daemons and nothing else.
        guard=
        if [[ ! -e /usr/sbin/policy-rc.d ]]; then
            printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && guard=1
        fi
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${PKGS[@]}" >/dev/null || { if [[ -n $guard ]]; then rm -f /usr/sbin/policy-rc.d; fi; die "apt-get install failed"; }
        if [[ -n $guard ]]; then rm -f /usr/sbin/policy-rc.d; fi
    else
        echo "slurm_e2e.sh needs ${missing[*]}: install the Debian packages ${PKGS[*]} (no apt-get here)" >&2
        exit 2
    fi
fi
command -v ageest >/dev/null || die "the ageest command is not installed (pip install -e '.[cluster]')"
if ! "$PY" -c 'import snakemake_executor_plugin_slurm' 2>/dev/null; then
    say "installing snakemake-executor-plugin-slurm"
    "$PY" -m pip install -q snakemake-executor-plugin-slurm || die "pip install snakemake-executor-plugin-slurm failed"
fi

# --- 2. the cluster, in a temporary folder --------------------------------------------------------

T=$(mktemp -d "${TMPDIR:-/tmp}/ageest-slurm-e2e.XXXXXX")
chmod 755 "$T"  # munged wants every folder above its socket searchable
export AGEEST_SLURM_E2E=$T  # marks every process this run starts (daemons, jobs, snakemake)
export SLURM_CONF=$T/etc/slurm.conf
PIDS=()  # name:pid of each daemon, in start order

stop_pid() {  # name pid: TERM, up to 30 s, then KILL
    local name=$1 pid=$2 i
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < 60; i++)); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
    say "$name ($pid) ignored SIGTERM; killing it"
    kill -KILL "$pid" 2>/dev/null || true
}

marked_pids() {  # processes carrying this run's marker, except this shell and its ancestors
    "$PY" - "$T" <<'EOF'
import os, sys
mine, marker = set(), f"AGEEST_SLURM_E2E={sys.argv[1]}".encode()
p = os.getpid()
while p > 1:
    mine.add(p)
    with open(f"/proc/{p}/stat") as f:
        p = int(f.read().rsplit(")", 1)[1].split()[1])
for d in os.listdir("/proc"):
    if d.isdigit() and int(d) not in mine:
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                if marker in f.read().split(b"\0"):
                    print(d)
        except OSError:
            pass
EOF
}

cleanup() {
    local rc=$? i name pid
    set +e
    trap - EXIT INT TERM
    if [[ -n ${SMK_BG:-} ]]; then stop_pid snakemake "$SMK_BG"; fi
    if [[ -S $T/munge/munge.sock ]] && squeue -h -o %i >/dev/null 2>&1; then
        squeue -h -o %i | xargs -r scancel 2>/dev/null
        for ((i = 0; i < 60; i++)); do [[ -z $(squeue -h -o %i 2>/dev/null) ]] && break; sleep 1; done
    fi
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        name=${PIDS[i]%%:*} pid=${PIDS[i]#*:}
        stop_pid "$name" "$pid"
    done
    # Whatever a job left behind (proctrack/linuxproc loses track of some): this run's own processes.
    for pid in $(marked_pids); do kill -KILL "$pid" 2>/dev/null; done
    if [[ ${SLURM_E2E_KEEP:-0} == 1 ]]; then say "kept $T"; else rm -rf "$T"; fi
    say "daemons stopped, temporary state removed; total $(secs_since "$T0") s"
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
CTLD_PORT=$(free_port) SLURMD_PORT=$(free_port) DBD_PORT=$(free_port) DB_PORT=$(free_port)
HOST=$(hostname -s)
mkdir -p "$T"/{etc,munge,log,run,ctld,spool,db} && chmod 755 "$T/munge"

# munge: a fresh key, its own socket
dd if=/dev/urandom of="$T/munge/munge.key" bs=1024 count=1 status=none && chmod 400 "$T/munge/munge.key"
munged -F --key-file="$T/munge/munge.key" --socket="$T/munge/munge.sock" --pid-file="$T/run/munged.pid" \
    --log-file="$T/log/munged.log" --seed-file="$T/munge/seed" >>"$T/log/munged.out" 2>&1 &
PIDS+=("munged:$!")

# MariaDB for slurmdbd: a private data folder, TCP on 127.0.0.1 only
mariadb-install-db --no-defaults --datadir="$T/db" --user="$(id -un)" --auth-root-authentication-method=normal \
    --skip-test-db >"$T/log/mariadb-install.log" 2>&1 || die "mariadb-install-db failed: $(tail -3 "$T/log/mariadb-install.log")"
mariadbd --no-defaults --datadir="$T/db" --user="$(id -un)" --socket="$T/run/mariadb.sock" --port="$DB_PORT" \
    --bind-address=127.0.0.1 --pid-file="$T/run/mariadb.pid" --log-error="$T/log/mariadb.log" \
    --innodb-buffer-pool-size=32M --skip-log-bin >/dev/null 2>&1 &
PIDS+=("mariadbd:$!")

cat >"$SLURM_CONF" <<EOF
ClusterName=ageest-e2e
SlurmctldHost=$HOST(127.0.0.1)
SlurmctldPort=$CTLD_PORT
SlurmdPort=$SLURMD_PORT
SlurmUser=$(id -un)
SlurmdUser=root
AuthType=auth/munge
# cred_expire also holds a requeued job back that long (default 120 s)
AuthInfo=socket=$T/munge/munge.sock,cred_expire=20
CredType=cred/munge
StateSaveLocation=$T/ctld
SlurmdSpoolDir=$T/spool
SlurmctldPidFile=$T/run/slurmctld.pid
SlurmdPidFile=$T/run/slurmd.pid
SlurmctldLogFile=$T/log/slurmctld.log
SlurmdLogFile=$T/log/slurmd.log
# A container has no cgroup controllers to give; real clusters use proctrack/cgroup.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
ReturnToService=2
KillWait=15
MinJobAge=300
# Only what sbatch asks for is requeued: --requeue comes from the profile (slurm-requeue: true).
JobRequeue=0
PreemptType=preempt/partition_prio
PreemptMode=REQUEUE
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort=$DBD_PORT
# The munge socket for talking to slurmdbd (AuthInfo covers only slurmctld and slurmd)
AccountingStoragePass=$T/munge/munge.sock
AccountingStorageTRES=gres/gpu
AccountingStoreFlags=job_comment
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/none
NodeName=$HOST NodeAddr=127.0.0.1 CPUs=2 RealMemory=4000 Gres=gpu:1 State=UNKNOWN
PartitionName=batch Nodes=$HOST Default=YES MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=gpu Nodes=$HOST MaxTime=INFINITE State=UP PriorityTier=1
PartitionName=urgent Nodes=$HOST MaxTime=INFINITE State=UP PriorityTier=10 PreemptMode=OFF
EOF
# A fake GPU: SLURM drops a GPU without a device file, and /dev/null serves.
echo "NodeName=$HOST Name=gpu File=/dev/null" >"$T/etc/gres.conf"
cat >"$T/etc/slurmdbd.conf" <<EOF
AuthType=auth/munge
AuthInfo=socket=$T/munge/munge.sock
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort=$DBD_PORT
SlurmUser=$(id -un)
PidFile=$T/run/slurmdbd.pid
LogFile=$T/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort=$DB_PORT
StorageUser=root
StorageLoc=slurm_acct_db
EOF
chmod 600 "$T/etc/slurmdbd.conf"
# Inside a job the jobstep plugin drops every SLURM_* variable, SLURM_CONF too, before its srun: a
# real cluster's srun finds /etc/slurm/slurm.conf, this one's is told where the config is.
mkdir -p "$T/bin"
printf '#!/bin/sh\nSLURM_CONF=%s exec %s "$@"\n' "$SLURM_CONF" "$(command -v srun)" >"$T/bin/srun"
chmod +x "$T/bin/srun"
export PATH=$T/bin:$PATH

wait_for() {  # seconds what command...: poll every half second
    local limit=$1 what=$2 t=$(date +%s); shift 2
    until "$@" >/dev/null 2>&1; do
        (($(date +%s) - t < limit)) || die "gave up waiting for $what after ${limit} s: $("$@" 2>&1 | tail -3)"
        sleep 0.5
    done
}
wait_for 60 "munged" test -S "$T/munge/munge.sock"
wait_for 60 "MariaDB" mariadb --no-defaults -h 127.0.0.1 -P "$DB_PORT" -u root -e 'select 1'
slurmdbd -D >>"$T/log/slurmdbd.out" 2>&1 &   # reads slurmdbd.conf beside $SLURM_CONF
PIDS+=("slurmdbd:$!")
wait_for 60 "slurmdbd" sacctmgr -n list cluster
sacctmgr -i add cluster ageest-e2e >/dev/null
sacctmgr -i add account e2e Description=e2e Organization=e2e >/dev/null
sacctmgr -i add user "$(id -un)" Account=e2e >/dev/null
slurmctld -D -f "$SLURM_CONF" >>"$T/log/slurmctld.out" 2>&1 &
PIDS+=("slurmctld:$!")
wait_for 60 "slurmctld" scontrol ping
slurmd -D -f "$SLURM_CONF" -N "$HOST" >>"$T/log/slurmd.out" 2>&1 &
PIDS+=("slurmd:$!")
node_idle() { [[ $(sinfo -h -N -n "$HOST" -o %t | head -1) == idle ]]; }
wait_for 90 "the node to be idle (sinfo)" node_idle
wait_for 60 "sacct" sacct -n -X
say "cluster up in $T: $(sinfo -h -N -o '%N %t cpus=%c mem=%m gres=%G' | head -1)"
say "$(sinfo --version), snakemake $("$PY" -m snakemake --version), snakemake-executor-plugin-slurm" \
    "$("$PY" -c 'import importlib.metadata as m; print(m.version("snakemake-executor-plugin-slurm"))')," \
    "$(munged --version 2>&1 | awk '{print $1}'), MariaDB $(mariadbd --version | awk '{print $3}')"

# --- 3. the study and the profile as a user fills it in ------------------------------------------

cat >"$T/study.yaml" <<'EOF'
data: {source: synthetic, images: resources/synth/images, url: null, sha256: null, synth_seed: 0,
       synth_subjects: 12}
subjects: [1, 2]
losses: [mean_variance, softmax]
reference_loss: softmax
baselines: [mean]
keep_models: false
training: {arch: resnet18, pretrained: none, epochs: 1, freeze_epochs: 0, batch_size: 16, lr: 0.002,
           image_size: 32, align: landmarks, seed: 0, device: cpu, threads: 1}
resources: {gpu: false, train_threads: 1, train_mem_mb: 1000, train_runtime: 10, prepare_mem_mb: 1000,
             prepare_runtime: 10}
gather: {prediction: predicted_age, bootstrap: 200, seed: 0}
EOF
mkdir -p "$T/profile"
sed -e 's/"YOUR_ACCOUNT"/e2e/' -e 's/"YOUR_CPU_PARTITION"/batch/' -e 's/"YOUR_GPU_PARTITION"/gpu/' \
    "$ROOT/profiles/slurm/config.yaml" >"$T/profile/config.yaml"
! sed 's/#.*//' "$T/profile/config.yaml" | grep -q YOUR_ || die "profiles/slurm has placeholders this test does not know"
# Toy-only: poll job states every few seconds (a real cluster: the plugin's 40 s), keep every
# SLURM log to look at.
TOY=(--slurm-init-seconds-before-status-checks 2 --slurm-keep-successful-logs)

smk() {  # workdir profile-dir snakemake-args...
    local wd=$1 profile=$2; shift 2
    mkdir -p "$wd"
    (cd "$wd" && "$PY" -m snakemake -s "$ROOT/Snakefile" --directory "$wd" --profile "$profile" "${TOY[@]}" "$@")
}
jobs_of() {  # sacct lines JobID|Comment|State|... of this cluster's jobs, every requeue included
    sacct -a -X -D -n -P -S now-1days -o "JobIDRaw,Comment,State,${1:-Partition}"
}
fail() { echo "FAILED: $*" >&2; exit 1; }

# --- 4. the tests -----------------------------------------------------------------------------------

test_a() {
    local wd=$T/a out
    # Placeholders left in: stops before anything is submitted, naming what to fill.
    local before; before=$(jobs_of | wc -l)
    if out=$(smk "$T/a0" "$ROOT/profiles/slurm" --configfile "$T/study.yaml" 2>&1); then
        fail "a run with the profile's placeholders went ahead"
    fi
    for k in "slurm_account (YOUR_ACCOUNT)" "slurm_partition (YOUR_CPU_PARTITION)" "train: slurm_partition (YOUR_GPU_PARTITION)"; do
        grep -qF "$k" <<<"$out" || fail "the placeholder message does not name '$k': $out"
    done
    [[ $(jobs_of | wc -l) == "$before" ]] || fail "jobs were submitted with placeholders in the profile"
    [[ ! -e $T/a0/resources ]] || fail "local rules ran with placeholders in the profile"
    echo "placeholders: stopped before submitting, named all three"

    smk "$wd" "$T/profile" --configfile "$T/study.yaml" >"$wd.log" 2>&1 || { tail -40 "$wd.log"; fail "the study did not finish"; }
    for t in folds summary comparison predictions history; do
        [[ -s $wd/results/tables/$t.tsv ]] || fail "results/tables/$t.tsv missing"
    done
    local jobs; jobs=$(jobs_of "Partition,ReqCPUS,ReqMem,Timelimit,JobName")
    echo "$jobs"
    local trains; trains=$(grep -c '|rule_train_wildcards_' <<<"$jobs" || true)
    [[ $trains == 4 ]] || fail "expected 4 training jobs in sacct, found $trains"
    [[ $(grep '|rule_train_wildcards_' <<<"$jobs" | cut -d'|' -f2 | sort -u | wc -l) == 4 ]] || fail "a fold was not its own job"
    [[ $(grep '|rule_train_wildcards_' <<<"$jobs" | cut -d'|' -f1 | sort -u | wc -l) == 4 ]] || fail "folds shared a job"
    grep '|rule_train_wildcards_' <<<"$jobs" | grep -v '|COMPLETED|gpu|1|1000M|00:10:00|' \
        && fail "a training job did not run with the study's resources (1 CPU, 1000 MB, 10 min) in the GPU partition"
    [[ $(grep -c '|rule_prepare|COMPLETED|batch|1|1000M|00:10:00|' <<<"$jobs") == 1 ]] || fail "prepare was not one job"
    local r
    for r in synth manifest training_config split baseline gather plots; do
        ! grep -q "|rule_${r}[|_]" <<<"$jobs" || fail "local rule $r was submitted to SLURM"
        grep -q "^localrule $r:" "$wd.log" || fail "local rule $r did not run here"
    done
    echo "4 folds, 4 SLURM jobs (1 CPU, 1000 MB, 10 min each, from the study's config); prepare 1 job; local rules local"
}

test_b() {
    local wd=$T/b id show
    printf 'resources: {gpu: true}\ntraining: {device: auto}\n' >"$T/gpu.yaml"
    smk "$wd" "$T/profile" results/folds/softmax/001/metrics.json --configfile "$T/study.yaml" "$T/gpu.yaml" \
        >"$wd.log" 2>&1 || { tail -40 "$wd.log"; fail "the GPU fold did not finish"; }
    [[ -s $wd/results/folds/softmax/001/metrics.json ]] || fail "no metrics.json"
    id=$(jobs_of | grep '|rule_train_wildcards_softmax_001|' | tail -1 | cut -d'|' -f1)
    show=$(scontrol show job "$id")
    echo "$show" | grep -E 'TRES|Tres|Partition'
    grep -qE 'gres/gpu=1|gres:gpu:1' <<<"$show" || fail "job $id asked for no GPU: $show"
    sacct -n -X -P -j "$id" -o AllocTRES | grep -q 'gres/gpu=1' || fail "sacct shows no GPU allocated to job $id"
    echo "job $id: one GPU requested and allocated"
}

test_c() {
    local wd=$T/c L id_mv id_sm t
    printf 'training: {epochs: 20}\n' >"$T/long.yaml"  # a kill needs saved state to resume from
    trap '[[ -n ${SMK_BG:-} ]] && kill "$SMK_BG" 2>/dev/null; true' EXIT  # a failed check stops its Snakemake
    smk "$wd" "$T/profile" results/folds/mean_variance/001/metrics.json results/folds/softmax/001/metrics.json \
        --configfile "$T/study.yaml" "$T/long.yaml" >"$wd.log" 2>&1 &
    SMK_BG=$!
    # Both folds have saved state after their first epoch: now kill them mid-training.
    t=0
    until [[ -s $wd/results/state/mean_variance/001/state.pt && -s $wd/results/state/softmax/001/state.pt ]]; do
        kill -0 "$SMK_BG" 2>/dev/null || { tail -30 "$wd.log"; fail "Snakemake ended before both folds saved state"; }
        ((++t < 1800)) || fail "no saved state from both folds after 900 s"
        sleep 0.5
    done
    id_mv=$(squeue -h -o '%i|%k' | grep '|rule_train_wildcards_mean_variance_001$' | cut -d'|' -f1)
    id_sm=$(squeue -h -o '%i|%k' | grep '|rule_train_wildcards_softmax_001$' | cut -d'|' -f1)
    [[ -n $id_mv && -n $id_sm ]] || fail "a fold finished before it could be interrupted (raise epochs)"
    scancel "$id_sm"
    # A job of a higher-priority partition that needs the whole node preempts the other fold.
    sbatch -Q -A e2e -p urgent -c 2 --mem=100 -J e2e-preemptor -o /dev/null --wrap 'sleep 2' >/dev/null
    say "test c: cancelled job $id_sm (softmax), preempting job $id_mv (mean_variance)"
    t=0
    while kill -0 "$SMK_BG" 2>/dev/null && ((t < 1200)); do sleep 1; ((++t)); done
    wait "$SMK_BG" || { tail -60 "$wd.log"; fail "the interrupted folds did not finish"; }
    SMK_BG=
    local mine; mine=$(jobs_of "JobName" | awk -F'|' -v first="$id_mv" -v second="$id_sm" '$1 >= first || $1 >= second')
    echo "$mine"
    grep -qE "^$id_mv\|rule_train_wildcards_mean_variance_001\|(PREEMPTED|REQUEUED)\|" <<<"$mine" \
        || fail "job $id_mv was not preempted"
    grep -qE "^$id_mv\|rule_train_wildcards_mean_variance_001\|COMPLETED\|" <<<"$mine" \
        || fail "the preempted job $id_mv was not requeued to completion under its id"
    grep -qE "^$id_sm\|rule_train_wildcards_softmax_001\|CANCELLED" <<<"$mine" || fail "job $id_sm was not cancelled"
    awk -F'|' -v id="$id_sm" '$1 > id && $2 == "rule_train_wildcards_softmax_001" && $3 == "COMPLETED"' <<<"$mine" \
        | grep -q . || fail "the cancelled fold was not retried in a new job"
    grep -q "Trying to restart job" "$wd.log" || fail "Snakemake did not say it retries the cancelled fold"
    for L in mean_variance softmax; do
        grep -q "^resuming from" "$wd/results/logs/train/$L/001.log" || fail "fold $L/001 did not resume: $(cat "$wd/results/logs/train/$L/001.log")"
        grep "^resuming from" "$wd/results/logs/train/$L/001.log"
        # The same fold, uninterrupted, run here: equal metrics, predictions and per-epoch history.
        (cd "$wd" && ageest train --images resources/synth/images --leave-subject 1 --loss "$L" --out "$T/c-ref/$L" \
            --config results/config/training.yaml --cache results/data/cache.npy --split results/splits/001.tsv \
            --state-dir "$T/c-ref/state-$L" --set threads=1 >"$T/c-ref-$L.log" 2>&1) || fail "reference run of $L failed"
        "$PY" - "$wd/results/folds/$L/001" "$T/c-ref/$L" <<'EOF' || fail "fold $L/001 differs from its uninterrupted run"
import csv, json, sys
from pathlib import Path
got, ref = Path(sys.argv[1]), Path(sys.argv[2])
m, r = (json.loads((p / "metrics.json").read_text()) for p in (got, ref))
timing = {"seconds", "attempt_seconds", "train_seconds", "startup_seconds", "cpu_seconds", "attempt_cpu_seconds",
          "peak_rss_mb", "peak_rss_scope"}
diff = sorted(k for k in m.keys() | r.keys() if k not in timing and m.get(k) != r.get(k))
assert not diff, f"metrics differ in {diff}"
assert (got / "predictions.tsv").read_text() == (ref / "predictions.tsv").read_text(), "predictions differ"
rows = [[{k: v for k, v in row.items() if k not in ("seconds", "images_per_second", "val_seconds")}
         for row in csv.DictReader(open(p / "history.tsv"), delimiter="\t")] for p in (got, ref)]
assert rows[0] == rows[1], "history differs"
runs = m["attempt_seconds"]
assert len(runs) >= 2 and abs(m["seconds"] - sum(runs)) < 1e-6, (m["seconds"], runs)
assert len(r["attempt_seconds"]) == 1
print(f"{got.parent.name}: test MAE {m['test_mae']:.4f} = uninterrupted; seconds {m['seconds']:.1f} ="
      f" {' + '.join(f'{s:.1f}' for s in runs)} (its runs)")
EOF
    done
}

test_d() {
    local wd=$T/d out img logs
    # The data steps and the fold's split done and checked; then one training image is truncated.
    smk "$wd" "$T/profile" results/data/cache.npy results/splits/001.tsv --configfile "$T/study.yaml" \
        >"$wd-prep.log" 2>&1 || { tail -40 "$wd-prep.log"; fail "data steps failed"; }
    img=$(ls "$wd/resources/synth/images" | grep '^005' | head -1)
    local f=$wd/resources/synth/images/$img stamp
    stamp=$(stat -c %Y "$f")
    truncate -s 100 "$f"
    touch -d "@$stamp" "$f"  # a silent corruption: same time stamp, nothing for Snakemake to rerun
    if smk "$wd" "$T/profile" results/folds/softmax/001/metrics.json --configfile "$T/study.yaml" >"$wd.log" 2>&1; then
        fail "the run with a truncated image succeeded"
    fi
    local err="built for other data or settings (differs in: fingerprint)"
    grep -qF "$err" "$wd.log" || { tail -60 "$wd.log"; fail "Snakemake's output does not show the fold's error"; }
    grep -q "^Exiting because a job execution failed" "$wd.log" || fail "Snakemake did not stop"
    grep -qF "$err" "$wd/results/logs/train/softmax/001.log" || fail "the fold's log lacks the error"
    # Each attempt's SLURM log shows the error itself (the train rule prints the end of the fold's
    # log when ageest fails), and says that the fold failed and where its whole log is.
    logs=$(ls "$wd"/.snakemake/slurm_logs/rule_train/softmax_001/*.log)
    [[ $(wc -w <<<"$logs") == 4 ]] || fail "expected 4 attempts (retries: 3), SLURM logs: $logs"
    for f in $logs; do
        grep -qF "$err" "$f" || { tail -40 "$f"; fail "SLURM log $f does not show the fold's error"; }
        grep -q "^Error in rule train:" "$f" && grep -qF "log: results/logs/train/softmax/001.log (check log file(s)" "$f" \
            || fail "SLURM log $f does not report the failed fold"
    done
    echo "4 attempts (the profile's retries: 3), each SLURM log shows the error and names the fold's log;" \
        "Snakemake's output shows:"
    grep -m1 -F "$err" "$wd.log"
    [[ -z $(find "$wd/results/folds" -type f 2>/dev/null) ]] || fail "partial fold output left: $(find "$wd/results/folds" -type f)"
    echo "results/folds holds no file"
}

declare -A TIMES RESULT
failed=0
for t in $TESTS; do
    say "test $t: start"
    t1=$(date +%s.%N)
    set +e
    (set -e; "test_$t") 2>&1 | sed "s/^/  [$t] /"
    rc=${PIPESTATUS[0]}
    set -e
    TIMES[$t]=$(secs_since "$t1")
    if ((rc == 0)); then RESULT[$t]=passed; else RESULT[$t]=FAILED; failed=1; fi
    say "test $t: ${RESULT[$t]} in ${TIMES[$t]} s"
done
say "summary: $(for t in $TESTS; do printf '%s %s (%s s)  ' "$t" "${RESULT[$t]}" "${TIMES[$t]}"; done)"
exit $failed
