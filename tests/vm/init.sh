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

session kprobe kprobe $CASES
close_session close-kprobe kprobe
session auto auto write
session tracepoint tracepoint $CASES
close_session close-tracepoint tracepoint
say "done at $(now)s"
finish
