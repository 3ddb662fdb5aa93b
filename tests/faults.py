"""I/O fault injection for tests, kept out of the library, the way SQLite tests its I/O errors.

`Faults(root)` patches the low-level calls a run writes with (opening a file for writing and the first `write` on it,
`os.replace`, `os.rename`, `os.fsync`, `os.mkdir`, `os.open` for writing, `os.truncate`, `os.chmod`, `os.unlink`,
`os.pwrite`, safetensors' `save_file` and `save_model`) and numbers each call that touches a path under `root`.
With `fail_at=None` it only counts (the dry run); with `fail_at=k` the k-th call fails as a full disk, a read-only
file system, a missing permission or a quota would (the error cycles through them), and every later call runs
normally. `Faults.points` lists what each call was, for messages. The fsyncs are counted (and fail when chosen) but
do not reach the disk: durability is not what these tests measure, and they run a hundred short trainings.
"""
import builtins, errno, io, os
from pathlib import Path
from safetensors import SafetensorError

ERRNOS = (errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT)
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND


def _fd_path(fd) -> str:
    try: return os.readlink(f'/proc/self/fd/{fd}')
    except OSError: return ''


class _File:
    "A file object whose first `write` is an injection point (a later one fails no differently); the rest is the file's."
    def __init__(self, f, faults, path):
        self._f, self._faults, self._path, self._written = f, faults, path, False

    def write(self, data):
        if not self._written: self._faults.point('write', self._path)
        self._written = True
        return self._f.write(data)

    def __enter__(self):
        self._f.__enter__()
        return self

    def __exit__(self, *exc): return self._f.__exit__(*exc)

    def __iter__(self): return iter(self._f)

    def __getattr__(self, name): return getattr(self._f, name)


class Faults:
    def __init__(self, root, fail_at=None):
        self.root, self.fail_at, self.points, self.failed = os.path.abspath(root), fail_at, [], None

    def under(self, path) -> bool:
        if isinstance(path, int): path = _fd_path(path)
        try: p = os.path.abspath(os.fspath(path))
        except TypeError: return False
        return p == self.root or p.startswith(self.root + os.sep)

    def error(self, k):
        n = ERRNOS[k % len(ERRNOS)]
        return n, os.strerror(n)

    def point(self, what, path, safetensors=False):
        "One injection point: fail here if it is the chosen one."
        if not self.under(path): return
        k = len(self.points)
        self.points.append(f'{what} {os.path.relpath(_fd_path(path) if isinstance(path, int) else path, self.root)}')
        if k != self.fail_at: return
        n, text = self.error(k)
        self.failed = (k, self.points[-1], text)
        if safetensors:  # what safetensors raises: its own error, the OS error inside the message
            raise SafetensorError(f'Error while serializing: I/O error: {text} (os error {n})')
        raise OSError(n, text, os.fspath(path) if not isinstance(path, int) else None)

    def patch(self, monkeypatch, *modules_with_save):
        "Patch the calls (and `save_file`/`save_model` in each module given)."
        real = {name: getattr(os, name) for name in
                ('replace', 'rename', 'fsync', 'mkdir', 'open', 'truncate', 'ftruncate', 'chmod', 'unlink', 'pwrite')}
        real_open = builtins.open

        def two_paths(name):
            def f(src, dst, *a, **k):
                self.point(name, dst)
                return real[name](src, dst, *a, **k)
            return f

        def one_path(name):
            def f(path, *a, **k):
                if k.get('dir_fd') is None: self.point(name, path)
                return real[name](path, *a, **k)
            return f

        def os_open(path, flags, *a, **k):
            if flags & _WRITE_FLAGS and k.get('dir_fd') is None: self.point('os.open', path)
            return real['open'](path, flags, *a, **k)

        def pwrite(fd, data, offset):
            self.point('pwrite', fd)
            return real['pwrite'](fd, data, offset)

        def opener(file, mode='r', *a, **k):
            if isinstance(file, int) or not any(c in mode for c in 'wax+') or not self.under(file):
                return real_open(file, mode, *a, **k)
            self.point('open', file)
            return _File(real_open(file, mode, *a, **k), self, file)

        for name in ('replace', 'rename'): monkeypatch.setattr(os, name, two_paths(name))
        for name in ('mkdir', 'truncate', 'ftruncate', 'chmod', 'unlink'):
            monkeypatch.setattr(os, name, one_path(name))
        monkeypatch.setattr(os, 'fsync', lambda fd: self.point('fsync', fd))
        monkeypatch.setattr(os, 'open', os_open)
        monkeypatch.setattr(os, 'pwrite', pwrite)
        monkeypatch.setattr(builtins, 'open', opener)
        monkeypatch.setattr(io, 'open', opener)
        for mod in modules_with_save:
            for name in ('save_file', 'save_model'):
                if hasattr(mod, name): monkeypatch.setattr(mod, name, self._save(getattr(mod, name), name))
        return self

    def _save(self, real, name):
        def save(obj, path, *a, **k):
            self.point(name, path, safetensors=True)
            return real(obj, path, *a, **k)
        return save
