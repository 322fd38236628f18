#!/bin/busybox sh
# /init of the `cargo xtask vm-test` guest (xtask/src/vm.rs packs it into the initramfs).
#
# Runs the tracer against the test peer with each backend and ships the raw results to the
# host over the second serial port (/dev/ttyS1): the tracer's JSON and stderr, each peer's
# summary, and sha256/size of what each receiver read. It judges nothing: the host does.
# Progress lines on the console start with "vm-test:".
#
# Data channel records:  @@KV <key> <value>\n   and   @@FILE <name> <size>\n<size bytes>\n
# ending with @@END.

/bin/busybox --install -s /bin
export PATH=/usr/local/bin:/bin
. /test/env

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
mount -t tmpfs tmpfs /tmp
# tracefs is left unmounted on purpose: the tracer mounts it itself when it needs it.

exec 3>/dev/ttyS1
stty -F /dev/ttyS1 raw -echo

say() { echo "vm-test: $*"; }
kv() { printf '@@KV %s %s\n' "$1" "$2" >&3; }
emit() { # NAME FILE
    n=0
    [ -f "$2" ] && n=$(wc -c < "$2")
    printf '@@FILE %s %s\n' "$1" "$n" >&3
    [ "$n" -gt 0 ] && cat "$2" >&3
    printf '\n' >&3
}
now() { cut -d' ' -f1 /proc/uptime; }
finish() {
    printf '@@END\n' >&3
    # The last close of the serial port waits until its output has drained.
    exec 3>&-
    sleep 1
    poweroff -f
}

say "booted $(uname -r) at $(now)s"
kv kernel "$(uname -r)"
kv kprobe_pmu "$(cat /sys/bus/event_source/devices/kprobe/type 2>/dev/null || echo none)"
kv sock_send_length_in_kallsyms "$(grep -c ' sock_send_length' /proc/kallsyms)"

mkdir -p /tmp/out /tmp/vt
t0=$(now)
containerdsnoop --load-only > /tmp/out/load.out 2> /tmp/out/load.err
kv load.rc $?
kv load.seconds "$(awk "BEGIN{print $(now) - $t0}")"
emit load.err /tmp/out/load.err
say "load-only: $(tail -c 300 /tmp/out/load.err)"

TPID=
TRC=
# start_tracer SESSION BACKEND SOCKET... : returns 0 once the tracer says it is tracing.
start_tracer() {
    s=$1; b=$2; shift 2
    containerdsnoop --backend "$b" --raw -o json "$@" \
        > /tmp/out/$s/tracer.out 2> /tmp/out/$s/tracer.err &
    TPID=$!
    i=0
    while [ $i -lt 600 ]; do
        grep -q '^Tracing ' /tmp/out/$s/tracer.err && return 0
        if ! kill -0 $TPID 2>/dev/null; then
            wait $TPID
            TRC=$?
            return 1
        fi
        usleep 200000
        i=$((i + 1))
    done
    kill -KILL $TPID
    wait $TPID
    TRC=timeout
    return 1
}

# run_case SESSION CASE CMD... : CMD ends with its output-folder flag; the folder is appended.
run_case() {
    s=$1; c=$2; shift 2
    d=/tmp/out/$s/$c
    mkdir -p $d
    t=$(now)
    timeout 300 "$@" $d > $d/peer.out 2> $d/peer.err
    rc=$?
    (cd $d && sha256sum client_to_server.bin server_to_client.bin) > $d/sums 2>&1
    kv $s/$c.rc $rc
    kv $s/$c.seconds "$(awk "BEGIN{print $(now) - $t}")"
    say "$s/$c: peer exit $rc ($(awk "BEGIN{print $(now) - $t}")s)"
}

# spelled, relative: the server binds another spelling of the selected path (///dir/x.sock,
# x.sock after chdir); selection is by the socket file's identity (issue #11).
CASES="write writev send sendmsg nonblock dgram-write dgram-sendmsg http2 spelled relative"

# session NAME BACKEND CASES...
session() {
    s=$1; b=$2; shift 2
    cases="$*"
    v=/tmp/vt/$s
    mkdir -p /tmp/out/$s $v
    socks=
    for c in $cases; do socks="$socks $v/$c.sock"; done
    t_session=$(now)
    kv $s.cases "$cases"
    kv $s.dir "$v"
    if ! start_tracer $s $b $socks; then
        say "$s: tracer did not start (exit $TRC): $(tail -c 400 /tmp/out/$s/tracer.err)"
        kv $s/tracer.rc "$TRC"
        emit $s/tracer.err /tmp/out/$s/tracer.err
        return
    fi
    say "$s: $(grep '^Tracing ' /tmp/out/$s/tracer.err) ($(awk "BEGIN{print $(now) - $t_session}")s)"
    # sendmsg: 1 MiB calls of 100 iovecs (the tracer follows up to 128 per call); nonblock:
    # 1 MiB writes, far above the ~208 KiB send buffer, so partial writes and EAGAIN happen.
    for c in $cases; do
        sock=$v/$c.sock
        ex="containerdsnoop-testpeer exchange --path $sock"
        dg="containerdsnoop-testpeer dgram --path $sock"
        case $c in
        write) run_case $s $c $ex --mode write --bytes 262144 --seed 11 --out-dir ;;
        writev) run_case $s $c $ex --mode writev --bytes 262144 --seed 12 --out-dir ;;
        send) run_case $s $c $ex --mode send --bytes 262144 --seed 13 --out-dir ;;
        sendmsg) run_case $s $c $ex --mode sendmsg --iovecs 100 --bytes 1048576 --seed 14 --out-dir ;;
        nonblock) run_case $s $c $ex --mode nonblock --bytes 1048576 --seed 15 --out-dir ;;
        dgram-write) run_case $s $c $dg --mode write --count 24 --seed 16 --out-dir ;;
        dgram-sendmsg) run_case $s $c $dg --mode sendmsg --count 24 --seed 17 --out-dir ;;
        spelled) run_case $s $c $ex --bind-as //$sock --mode write --bytes 65536 --seed 18 --out-dir ;;
        relative) run_case $s $c $ex --chdir $v --bind-as $c.sock --mode write --bytes 65536 \
            --seed 19 --out-dir ;;
        http2) run_case $s $c xtask vm-test --guest-replay /test/ctr-version.h2trace \
            --guest-socket $sock --guest-out-dir ;;
        esac
    done
    kill -TERM $TPID
    wait $TPID
    kv $s/tracer.rc $?
    kv $s.seconds "$(awk "BEGIN{print $(now) - $t_session}")"
    say "$s: tracer exit $(tail -n 1 /tmp/out/$s/tracer.err)"
    emit $s/tracer.err /tmp/out/$s/tracer.err
    # The serial line moves ~0.4 MB/s: ship the records with their payloads replaced by
    # per-socket sha256 digests, unless the host asked for everything (vmtest.full).
    t_ship=$(now)
    if grep -q vmtest.full /proc/cmdline; then
        gzip -1 /tmp/out/$s/tracer.out
        emit $s/tracer.out.gz /tmp/out/$s/tracer.out.gz
    else
        xtask vm-test --guest-digest /tmp/out/$s/tracer.out > /tmp/out/$s/tracer.digest \
            2> /tmp/out/$s/digest.err
        kv $s/digest.rc $?
        emit $s/tracer.digest /tmp/out/$s/tracer.digest
        emit $s/digest.err /tmp/out/$s/digest.err
    fi
    for c in $cases; do
        emit $s/$c/peer.out /tmp/out/$s/$c/peer.out
        emit $s/$c/peer.err /tmp/out/$s/$c/peer.err
        emit $s/$c/sums /tmp/out/$s/$c/sums
    done
    kv $s.ship_seconds "$(awk "BEGIN{print $(now) - $t_ship}")"
    rm -rf /tmp/out/$s /tmp/vt/$s
}

# close_session NAME BACKEND: connection ends seen as they happen (issue #12), as decoded rows.
# HTTP/1.1 calls to a server that never answers (slow.sock) or streams forever (stream.sock):
# clients that SIGKILL themselves mid-call, close before the answer, or are still open when the
# tracer stops. Each client prints its CLOCK_MONOTONIC times; the host compares them with the rows.
close_session() {
    s=$1; b=$2
    v=/tmp/vt/$s
    o=/tmp/out/$s
    mkdir -p $o $v
    t_session=$(now)
    hc="containerdsnoop-testpeer hold-client"
    containerdsnoop-testpeer hold-server --path $v/slow.sock > $o/slow.out 2>&1 &
    SLOW=$!
    containerdsnoop-testpeer hold-server --path $v/stream.sock --stream > $o/stream.out 2>&1 &
    STREAM=$!
    i=0
    while [ $i -lt 100 ] && ! { [ -S $v/slow.sock ] && [ -S $v/stream.sock ]; }; do
        usleep 100000
        i=$((i + 1))
    done
    containerdsnoop --backend "$b" -o json $v/slow.sock $v/stream.sock \
        > $o/tracer.out 2> $o/tracer.err &
    TPID=$!
    i=0
    while [ $i -lt 600 ] && ! grep -q '^Tracing ' $o/tracer.err && kill -0 $TPID 2>/dev/null; do
        usleep 200000
        i=$((i + 1))
    done
    say "$s: $(grep '^Tracing ' $o/tracer.err)"
    timeout 60 $hc --path $v/slow.sock --target /killed --abort-after-ms 300 > $o/killed.out 2>&1
    timeout 60 $hc --path $v/slow.sock --target /closed --close-after-ms 300 --exit-after-ms 1000 \
        > $o/closed.out 2>&1
    timeout 60 $hc --path $v/stream.sock --target /streamkilled --abort-after-ms 500 \
        > $o/streamkilled.out 2>&1
    timeout 60 $hc --path $v/slow.sock --target /later --exit-after-ms 200 > $o/later.out 2>&1
    $hc --path $v/stream.sock --target /open > $o/open.out 2>&1 &
    OPEN=$!
    sleep 2
    kill -TERM $TPID
    wait $TPID
    kv $s/tracer.rc $?
    kill -KILL $OPEN $SLOW $STREAM
    wait $OPEN $SLOW $STREAM 2>/dev/null
    kv $s.seconds "$(awk "BEGIN{print $(now) - $t_session}")"
    say "$s: tracer exit $(tail -n 1 $o/tracer.err)"
    for f in tracer.out tracer.err killed.out closed.out streamkilled.out later.out; do
        emit $s/$f $o/$f
    done
    rm -rf $o $v
}

# The churn sessions' parent directory (issue #19): an ext4 RAM disk when the host shipped this
# kernel's brd and ext4 modules (/test/modules, in load order), because ext4 gives a removed
# file's inode number to the next file at once; else /tmp's tmpfs, which never does.
CHURN_BASE=/tmp
if [ -d /test/modules ]; then
    ok=1
    for m in /test/modules/*.ko; do
        case $m in
        *-brd.ko) insmod $m rd_nr=1 rd_size=32768 2>> /tmp/out/churn-fs.err || ok=0 ;;
        *) insmod $m 2>> /tmp/out/churn-fs.err || ok=0 ;;
        esac
    done
    mkdir -p /mnt/churn
    if [ $ok = 1 ] && mke2fs -F /dev/ram0 > /dev/null 2>> /tmp/out/churn-fs.err &&
        mount -t ext4 /dev/ram0 /mnt/churn 2>> /tmp/out/churn-fs.err; then
        CHURN_BASE=/mnt/churn
    fi
else
    echo "no modules in the initramfs" > /tmp/out/churn-fs.err
fi
kv churn.mount "$(awk -v d=$CHURN_BASE '$2 == d' /proc/mounts)"
emit churn-fs.err /tmp/out/churn-fs.err
say "churn directory on: $(awk -v d=$CHURN_BASE '$2 == d' /proc/mounts)"
# TCG is slow: fewer rounds than the host's e2e test, still 1000 unselected sockets in all.
CHURN_ROUNDS=10
CHURN_UNSELECTED=100

# churn_session NAME BACKEND: two tracers with disjoint selections (A: a.sock and a.d/*, B:
# b.sock) while the test peer's `churn` removes and re-creates their sockets and directory
# among 1000 unselected ones. Each round's new a.d is used once tracer A has reported it
# (the peer waits for go-a.d-R). Ships both tracers' whole output; the host judges.
churn_session() {
    s=$1; b=$2
    d=$CHURN_BASE/$s
    o=/tmp/out/$s
    rm -rf $d
    mkdir -p $o $d
    t_session=$(now)
    containerdsnoop --backend $b --raw -o json "$d/a.sock" "$d/a.d/*" > $o/a.out 2> $o/a.err &
    APID=$!
    containerdsnoop --backend $b --raw -o json "$d/b.sock" > $o/b.out 2> $o/b.err &
    BPID=$!
    i=0
    while [ $i -lt 600 ] && ! { grep -q '^Tracing ' $o/a.err && grep -q '^Tracing ' $o/b.err; }; do
        if ! kill -0 $APID 2>/dev/null || ! kill -0 $BPID 2>/dev/null; then
            break
        fi
        usleep 200000
        i=$((i + 1))
    done
    if ! { grep -q '^Tracing ' $o/a.err && grep -q '^Tracing ' $o/b.err; }; then
        kill -KILL $APID $BPID 2>/dev/null
        wait $APID
        kv $s/a.rc $?
        wait $BPID
        kv $s/b.rc $?
        say "$s: a tracer did not start: $(tail -c 300 $o/a.err) $(tail -c 300 $o/b.err)"
        emit $s/a.err $o/a.err
        emit $s/b.err $o/b.err
        rm -rf $o $d
        return
    fi
    say "$s: both tracers started ($(awk "BEGIN{print $(now) - $t_session}")s)"
    containerdsnoop-testpeer churn --dir $d --rounds $CHURN_ROUNDS \
        --unselected $CHURN_UNSELECTED > $o/peer.out 2> $o/peer.err &
    PEER=$!
    notice="containerdsnoop: $d/a.d/*: directory "
    r=0
    while [ $r -lt $CHURN_ROUNDS ] && kill -0 $PEER 2>/dev/null; do
        seen=$(grep -F "$notice" $o/a.err | grep -c -E 'exists now|replaced')
        if [ "$seen" -gt $r ]; then
            : > $d/go-a.d-$r
            r=$((r + 1))
        else
            usleep 50000
        fi
    done
    wait $PEER
    kv $s/peer.rc $?
    kill -TERM $APID $BPID
    wait $APID
    kv $s/a.rc $?
    wait $BPID
    kv $s/b.rc $?
    kv $s.seconds "$(awk "BEGIN{print $(now) - $t_session}")"
    say "$s: peer done, tracers stopped ($(awk "BEGIN{print $(now) - $t_session}")s)"
    gzip -1 $o/a.out $o/b.out
    for f in a.out.gz b.out.gz a.err b.err peer.out peer.err; do
        emit $s/$f $o/$f
    done
    rm -rf $o $d
}

session kprobe kprobe $CASES
close_session close-kprobe kprobe
churn_session churn-kprobe kprobe
session auto auto write
session tracepoint tracepoint $CASES
close_session close-tracepoint tracepoint
# The tracepoint backend runs from 6.3 (sock_send_length); before, `session tracepoint` has
# already checked that it refuses.
v=$(uname -r)
major=${v%%.*}
minor=${v#*.}
minor=${minor%%[!0-9]*}
if [ "$major" -gt 6 ] || { [ "$major" -eq 6 ] && [ "$minor" -ge 3 ]; }; then
    churn_session churn-tracepoint tracepoint
fi
say "done at $(now)s"
finish
