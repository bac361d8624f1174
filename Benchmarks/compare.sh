#!/usr/bin/env bash
# Before and after (not part of `make test`): the signaling and WHEP benchmarks of this checkout
# and of another (an earlier commit, built release by its own scripts), alternated in one run
# (A B B A …) so that the machine's drift falls on both. Each side runs its own
# Benchmarks/signal.sh and Benchmarks/whep.sh, as they were at that commit; the key figures
# are printed per run, then the medians and the ratios after/before.
#
#   git clone -q . /tmp/sb-before && git -C /tmp/sb-before checkout -q 1f124c1
#   Benchmarks/compare.sh /tmp/sb-before [ROUNDS=2] [PEERS=10000] [RATE=1000] [VIEWERS=500]
set -euo pipefail
cd "$(dirname "$0")/.."

BEFORE=$(cd "${1:?usage: compare.sh BEFORE_CHECKOUT [ROUNDS] [PEERS] [RATE] [VIEWERS]}" && pwd)
ROUNDS=${2:-2}
PEERS=${3:-10000}
RATE=${4:-1000}
VIEWERS=${5:-500}
AFTER=$PWD
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

for side in "$BEFORE" "$AFTER"; do  # builds first, so no run waits on one
    (cd "$side" && swift build -c release --product switchboard >/dev/null)
done
echo "compare: before $(git -C "$BEFORE" rev-parse --short HEAD), after $(git rev-parse --short HEAD); $ROUNDS rounds"

run() {  # run SIDE_NAME DIR ROUND
    local name=$1 dir=$2 round=$3
    "$dir/Benchmarks/signal.sh" "$PEERS" "$RATE" 10 > "$WORK/signal-$name-$round.txt" 2>&1 || true
    "$dir/Benchmarks/whep.sh" "$VIEWERS" 1000 10 > "$WORK/whep-$name-$round.txt" 2>&1 || true
    python3 - "$name" "$round" "$WORK/signal-$name-$round.txt" "$WORK/whep-$name-$round.txt" >> "$WORK/figures.tsv" <<'EOF'
import re, sys
name, round_, signal, whep = sys.argv[1:]
text = open(signal).read()
def field(key):
    match = re.search(rf"^{key}\s+([0-9.]+)", text, re.M)
    return match.group(1) if match else "nan"
whep_text = open(whep).read()
sb = re.search(r"^switchboard .*?([0-9.]+) viewers/core\s+first keyframe p50\s+([0-9.]+) ms", whep_text, re.M)
loss = re.search(r"^switchboard .*?loss\s+([0-9.]+)%", whep_text, re.M)
figures = [field("offer_delivery_p50_ms"), field("offer_delivery_p99_ms"), field("answer_round_trip_p99_ms"),
           field("sessions_per_second"), field("server_rss_per_peer_kb"),
           sb.group(1) if sb else "nan", sb.group(2) if sb else "nan", loss.group(1) if loss else "nan"]
print("\t".join([name, round_] + figures))
EOF
    tail -n 1 "$WORK/figures.tsv"
}

printf 'side\tround\toffer_p50_ms\toffer_p99_ms\tanswer_p99_ms\tsessions/s\trss_kb/peer\twhep_viewers/core\tfirst_kf_p50_ms\twhep_loss_%%\n'
for round in $(seq "$ROUNDS"); do
    if (( round % 2 )); then
        run before "$BEFORE" "$round"; run after "$AFTER" "$round"
    else
        run after "$AFTER" "$round"; run before "$BEFORE" "$round"
    fi
done

python3 - "$WORK/figures.tsv" <<'EOF'
import statistics, sys
names = ["offer_p50_ms", "offer_p99_ms", "answer_p99_ms", "sessions/s", "rss_kb/peer", "whep_viewers/core",
         "first_kf_p50_ms", "whep_loss_%"]
rows = [line.rstrip("\n").split("\t") for line in open(sys.argv[1])]
def median(side, index):
    values = [float(row[2 + index]) for row in rows if row[0] == side and row[2 + index] != "nan"]
    return statistics.median(values) if values else float("nan")
print(f"{'median':<18} {'before':>10} {'after':>10} {'after/before':>13}")
for index, name in enumerate(names):
    before, after = median("before", index), median("after", index)
    ratio = after / before if before else float("nan")
    print(f"{name:<18} {before:10.2f} {after:10.2f} {ratio:12.2f}x")
EOF
echo "goals: offer p99 ≤ 5 ms at 1000 sessions/s with 10k peers, ≤ 20 KB per peer; WHEP ≥ 1500 viewers per core"
