#!/usr/bin/python3
"""Root writes a file into a folder that a less trusted account owns, safely.

First boot and provision-admin run as root but leave files for the supervisor in
/var/lib/hearth, which user hearth owns. Whoever runs as hearth (a compromised supervisor) can
put anything there, a symlink to /etc/shadow included, so root must never follow a name in that
folder: `>`, `chown` and a plain open() all do. Here:

- the folder is opened once, without following a symlink (O_DIRECTORY|O_NOFOLLOW), and every
  name below is resolved against that descriptor, never as a path again;
- the contents go to a fresh random name made with O_CREAT|O_EXCL|O_NOFOLLOW (nothing that was
  there before, link or file, is ever opened), are owned and given their mode through the
  descriptor (fchown/fchmod: no name is looked up), flushed, and renamed over the destination.
  rename() replaces a symlink at the destination, it never writes through it;
- a power cut leaves the old file or the new one, never half of one (fsync of file and folder).

The other way round, root takes a request the supervisor left there (the setup page's restore,
the backup disk to prepare): `take` opens the name against the folder's descriptor with
O_NOFOLLOW|O_NONBLOCK (a symlink fails, a FIFO does not block), reads it only if it is a regular
file of at most 64 KiB, and removes it, so a request is carried out once.

Usage:
    hearthfs.py put DEST MODE [OWNER]      the contents on standard input,
                                           e.g. put /var/lib/hearth/setup_code 0400 hearth
    hearthfs.py take SRC                   the contents on standard output; SRC is removed
"""
import errno
import os
import stat
import pwd
import secrets
import sys


def put(path, data, mode, owner=None):
    """Writes `data` (bytes) to `path` with `mode`, owned by `owner` (a user name) if given."""
    folder, name = os.path.split(os.path.abspath(path))
    if not name or name in (".", ".."):
        raise ValueError(f"{path}: not a file name")
    uid = gid = None
    if owner is not None:
        entry = pwd.getpwnam(owner)
        uid, gid = entry.pw_uid, entry.pw_gid
    dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        tmp = f".{name}.{secrets.token_hex(8)}"
        fd = os.open(
            tmp,
            os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
            dir_fd=dfd,
        )
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view):]
                if uid is not None:
                    os.fchown(fd, uid, gid)
                os.fchmod(fd, mode)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.rename(tmp, name, src_dir_fd=dfd, dst_dir_fd=dfd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
            raise
        os.fsync(dfd)
    finally:
        os.close(dfd)


TAKE_LIMIT = 64 * 1024


def take(path):
    """Reads the regular file `path` (never through a symlink, never blocking) and removes it."""
    folder, name = os.path.split(os.path.abspath(path))
    if not name or name in (".", ".."):
        raise ValueError(f"{path}: not a file name")
    dfd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        try:
            fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dfd)
        except OSError as e:
            if e.errno == errno.ELOOP:
                os.unlink(name, dir_fd=dfd)  # a planted symlink: removed, never followed
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise ValueError("not a regular file")
            if st.st_size > TAKE_LIMIT:
                raise ValueError(f"larger than {TAKE_LIMIT} bytes")
            data = b""
            while len(data) <= TAKE_LIMIT:
                chunk = os.read(fd, TAKE_LIMIT + 1 - len(data))
                if not chunk:
                    break
                data += chunk
            if len(data) > TAKE_LIMIT:
                raise ValueError(f"larger than {TAKE_LIMIT} bytes")
        finally:
            os.close(fd)
            # Taken, or refused: either way it is not carried out again.
            os.unlink(name, dir_fd=dfd)
            os.fsync(dfd)
        return data
    finally:
        os.close(dfd)


def main(argv):
    if len(argv) == 3 and argv[1] == "take":
        try:
            sys.stdout.buffer.write(take(argv[2]))
        except (OSError, ValueError) as e:
            sys.exit(f"hearthfs.py: {argv[2]}: {e}")
        return
    if len(argv) not in (4, 5) or argv[1] != "put":
        sys.exit("usage: hearthfs.py put DEST MODE [OWNER]  (contents on standard input)\n"
                 "       hearthfs.py take SRC  (contents on standard output; SRC removed)")
    try:
        mode = int(argv[3], 8)
    except ValueError:
        sys.exit(f"hearthfs.py: MODE: not an octal mode: '{argv[3]}'")
    owner = argv[4] if len(argv) == 5 else None
    try:
        put(argv[2], sys.stdin.buffer.read(), mode, owner)
    except (OSError, KeyError, ValueError) as e:
        sys.exit(f"hearthfs.py: {argv[2]}: {e}")


if __name__ == "__main__":
    main(sys.argv)
