# Sourced by tests/deb/run.sh: a real systemd (the machine's, /lib/systemd/systemd) as PID 1 of new
# PID, mount and cgroup namespaces, to start the installed understudy.service as an operator's
# systemd does — Type=notify, User=, StateDirectory= and the whole sandbox — on a machine or
# container whose own PID 1 is not systemd (this one's is not). What is private to the namespaces:
# /run, /tmp, /var/tmp (tmpfs: systemd-tmpfiles cannot touch the machine's), the cgroup tree (a
# child cgroup of ours, mounted as cgroup2 root), /proc (its /proc/sys read-only: no sysctl
# reaches the kernel). The network, /usr, /etc and /var/lib are the machine's. systemd boots
# sd-test.target (understudy.service only), with everything that sysinit.target and basic.target
# would start masked but the journal, and container=understudy-test (the units that are
# conditioned off in containers stay off).
#
#   sd_boot              starts it; sets $sd_pid (systemd's PID on this machine)
#   sd CMD...            runs CMD inside (systemctl, journalctl, systemd-analyze)
#   sd_poweroff          stops it and everything it started, removes the cgroup (also on EXIT)

sd_cgroup=""
sd_pid=""
sd_unshare=""

# The cgroup2 hierarchy: the whole of /sys/fs/cgroup, or its "unified" part on a hybrid machine.
sd_cgroup_root() {
    local d
    for d in /sys/fs/cgroup /sys/fs/cgroup/unified; do
        [ "$(stat -fc %T "$d" 2>/dev/null)" = cgroup2fs ] && { echo "$d"; return; }
    done
    return 1
}

sd_boot() {
    local root inner
    root=$(sd_cgroup_root) || fail "systemd in a namespace: no cgroup2 hierarchy under /sys/fs/cgroup"
    sd_cgroup="$root/understudy-test-$$"
    mkdir "$sd_cgroup" || fail "systemd in a namespace: cannot create $sd_cgroup"
    # shellcheck disable=SC2016  # expanded by the inner shell
    inner='
        set -e
        mount -t tmpfs -o mode=0755 tmpfs /run
        mount -t tmpfs -o mode=1777 tmpfs /tmp
        mount -t tmpfs -o mode=1777 tmpfs /var/tmp
        mount -t cgroup2 cgroup2 /sys/fs/cgroup
        mount --bind /proc/sys /proc/sys && mount -o remount,bind,ro /proc/sys
        mkdir -p /run/systemd/system
        for t in sysinit basic sockets timers paths slices local-fs remote-fs; do
            for u in /etc/systemd/system/$t.target.wants/* /lib/systemd/system/$t.target.wants/*; do
                [ -e "$u" ] || continue
                case "${u##*/}" in systemd-journald*) ;; *) ln -sf /dev/null "/run/systemd/system/${u##*/}" ;; esac
            done
        done
        printf "[Unit]\nDescription=understudy.service alone\nRequires=understudy.service\nAfter=understudy.service\n" \
            >/run/systemd/system/sd-test.target
        export container=understudy-test
        exec /lib/systemd/systemd --system --unit=sd-test.target --log-target=journal-or-kmsg'
    # The launcher joins the child cgroup first: the new cgroup namespace is rooted there.
    setsid bash -c 'echo $$ >"$1/cgroup.procs" && exec unshare --pid --fork --mount --cgroup --mount-proc \
        --kill-child=SIGKILL bash -c "$2"' _ "$sd_cgroup" "$inner" >"$work/systemd.log" 2>&1 &
    sd_unshare=$!
    wait_for 10 "systemd started in the namespaces" sd_find_pid
    wait_for 30 "systemd answering in the namespaces" sd systemctl show -p Version --value
}

sd_find_pid() { sd_pid=$(pgrep -P "$sd_unshare" -x systemd) && [ -n "$sd_pid" ]; }

sd() { nsenter -t "$sd_pid" -m -p -- "$@"; }

# The journal inside, kept beside the test's logs (it lives in the namespace's /run).
sd_journal() { sd journalctl --no-pager -o short-precise >"$work/journal.log" 2>&1 || true; }

sd_poweroff() {
    [ -n "$sd_unshare" ] || return 0
    [ -n "$sd_pid" ] && sd_journal
    # SIGRTMIN+4: poweroff, which for a container's systemd means: stop every unit, then exit.
    [ -n "$sd_pid" ] && kill -s RTMIN+4 "$sd_pid" 2>/dev/null
    for _ in $(seq 300); do kill -0 "$sd_unshare" 2>/dev/null || break; sleep 0.1; done
    # Still there after 30 s: SIGKILL for the namespace's PID 1 ends every process in it.
    if kill -0 "$sd_unshare" 2>/dev/null; then
        [ -n "$sd_pid" ] && kill -KILL "$sd_pid" 2>/dev/null
        kill -KILL "$sd_unshare" 2>/dev/null
    fi
    wait "$sd_unshare" 2>/dev/null || true
    sd_unshare="" sd_pid=""
    [ -d "$sd_cgroup" ] && find "$sd_cgroup" -depth -type d -exec rmdir {} + 2>/dev/null
    [ ! -d "$sd_cgroup" ] || echo "warning: $sd_cgroup left behind" >&2
}
