"""Reading and writing files so that a crash never leaves half of one and no name a user may own is touched:
atomic writes, directory swaps and their recovery, caches checked when read, JSON and text read with one-line
errors, content hashes."""
import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile

from utils import WORLD, UserError, check_writable_dir, logger


def atomic_write(path, write, mode="w"):
    """write(file) into a new file of a unique name beside path (.<name>.writing-XXXXXXXX), then rename it to path:
    a reader sees the old file or the whole new one, and no other name is touched. A symlink at path is written
    through (the file it points to is replaced, the link stays). The file keeps the permissions of the one it
    replaces (a new one gets the usual ones, by the umask)."""
    path = os.path.realpath(path)
    directory, name = os.path.split(path)
    try:
        descriptor, tmp = tempfile.mkstemp(prefix=f".{name}.writing-", dir=directory)
    except OSError as error:
        raise OSError(error.errno, error.strerror, path) from None
    try:
        with os.fdopen(descriptor, mode, **({} if "b" in mode else {"encoding": "utf-8"})) as f:
            try:
                permissions = stat.S_IMODE(os.stat(path).st_mode)
            except FileNotFoundError:
                permissions = 0o666 & ~_UMASK
            os.fchmod(f.fileno(), permissions)  # mkstemp's file is private to its owner
            write(f)
        os.replace(tmp, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise _naming(error, path)


def _umask():
    """The process's umask, read without changing it where Linux tells it."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            return next(int(line.split()[1], 8) for line in f if line.startswith("Umask:"))
    except (OSError, StopIteration, ValueError):
        mask = os.umask(0o022)
        os.umask(mask)
        return mask


_UMASK = _umask()


def read_cache(path, load, problem):
    """The entry cached at path, or None when there is none or it is bad: load(path) fails, or problem(entry) says
    what is wrong with it (None when nothing is). A bad entry is reported in one warning and moved aside to
    <path>.bad (replacing an older one), so that it is computed again and can still be looked at."""
    if not os.path.exists(path):
        return None
    try:
        entry = load(path)
    except Exception as error:  # a truncated or overwritten file fails in many ways
        wrong = f"unreadable ({type(error).__name__}: {(str(error).splitlines() or [''])[0]})"
    else:
        wrong = problem(entry)
    if wrong is None:
        return entry
    logger.warning("cache %s is bad: %s; moved aside to %s.bad, computing it again", path, wrong, path)
    if WORLD.is_main:  # in a run of several processes, every one finds it bad, one moves it
        os.replace(path, path + ".bad")
    return None


def write_cache(path, entry, save, problem, what):
    """Cache a freshly computed entry at path (save(file, entry), written whole or not at all) once problem(entry)
    finds nothing wrong; otherwise nothing is written and a UserError says what (e.g. "--teacher_dir t: the
    teacher's logits") is bad."""
    wrong = problem(entry)
    if wrong is not None:
        raise UserError(f"{what} are bad: {wrong}; not cached in {path}")
    if not WORLD.is_main:
        return  # the other processes of a run computed the same entry
    try:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        atomic_write(path, lambda f: save(f, entry), "wb")
    except OSError as error:  # a full disk, a quota, a read-only cache directory
        raise UserError(f"{error.filename or path}: cannot be written ({error.strerror or error}); the cache keeps "
                        "what it held before") from None


def write_json(path, obj):
    atomic_write(path, lambda f: f.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n"))


def read_text(path, flag):
    """The text of a UTF-8 file (with universal newlines, as PaddleNLP's readers see it), refused in one line
    naming the flag when the file is missing, a directory, unreadable or not UTF-8."""
    if os.path.isdir(path):
        raise UserError(f"{flag} {path}: is a directory, not a file")
    if not os.path.isfile(path):
        raise UserError(f"{flag} {path}: no such file")
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as error:
        raise UserError(f"{flag} {path}: not UTF-8 text ({error.reason} at byte {error.start})") from None
    except OSError as error:
        raise UserError(f"{flag} {path}: cannot be read ({error.strerror})") from None


def read_json(path, fields=(), flag=None):
    """The JSON object in a file, refused (naming the file, and the flag that named it if given) when the file is
    not JSON, not an object, or lacks one of `fields`; with a flag, also when it is missing or not UTF-8 text."""
    where = f"{flag} {path}" if flag else path
    try:
        if flag:
            obj = json.loads(read_text(path, flag))
        else:
            with open(path, encoding="utf-8") as f:
                obj = json.load(f)
    except (ValueError, UnicodeDecodeError) as error:  # JSONDecodeError is a ValueError
        raise UserError(f"{where}: not a valid JSON file ({error})") from None
    if not isinstance(obj, dict):
        raise UserError(f"{where}: expected a JSON object, found {type(obj).__name__}")
    missing = [name for name in fields if name not in obj]
    if missing:
        raise UserError(f"{where}: missing field(s) {', '.join(missing)}")
    return obj


# The temporary names replace_dir and atomic_write give what they write beside <name>: made unique in the parent
# directory by tempfile, never a fixed name a user may own.
_STAGED = re.compile(r"\.(?P<name>.+)\.(?P<kind>replacing|writing)-[a-z0-9_]{8}")


REPLACING = "replacing.json"  # the mark of replace_dir's work directory, naming the directory it replaces


def staged_name(entry):
    """The name that a directory entry stands in for when it is a temporary name of replace_dir or atomic_write
    (.best.replacing-k3j2x9a1 -> best, .results.json.writing-0abc_9de -> results.json), else None."""
    match = _STAGED.fullmatch(entry)
    return match["name"] if match else None


def replace_dir(build, path):
    """Write a directory with build(directory), then swap it in for path, so that path is always whole: the old
    version until the new one is complete. A symlink at path is written through (the directory it points to is
    replaced, the link stays); a file at path is refused. All the work happens in a work directory of a unique name
    beside path (.<name>.replacing-XXXXXXXX, marked with REPLACING and locked while in use): the new version is
    built there, and the old one moved there for the swap and deleted with it, so no other name is touched. A crash
    between the two renames leaves the old version in the work directory, which recover_dir (run first by every
    replace_dir) puts back."""
    path = os.path.realpath(path)
    if os.path.lexists(path) and not os.path.isdir(path):
        raise UserError(f"{path}: exists and is not a directory; not replaced")
    recover_dir(path)
    work = tempfile.mkdtemp(prefix=f".{os.path.basename(path)}.replacing-", dir=os.path.dirname(path))
    mark = None
    try:
        mark = os.open(os.path.join(work, REPLACING), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        fcntl.flock(mark, fcntl.LOCK_EX)  # tells recover_dir of another process that this replace is still going
        os.write(mark, json.dumps({REPLACING: os.path.basename(path)}).encode())
        new = os.path.join(work, "new")
        os.mkdir(new)  # with the usual permissions (mkdtemp makes the work directory private)
        build(new)
        if os.path.lexists(path):
            os.replace(path, os.path.join(work, "old"))
        os.replace(new, path)
        shutil.rmtree(work, ignore_errors=True)
    except BaseException as error:
        _settle(work, path)
        raise _naming(error, path)
    finally:
        if mark is not None:
            os.close(mark)


def _naming(error, path):
    """An OS error that names no file (a write that found the disk full) named after the path being written; also
    one without an error number (numpy's "43093 requested and 7504 written" when the disk fills mid-array)."""
    if isinstance(error, OSError) and not error.filename:
        return OSError(error.errno, error.strerror or str(error), path)
    return error


def recover_dir(path):
    """Settle what replace_dir(path) left beside path when it was cut short (a crash, SIGKILL): the previous version
    put back if path is missing (the crash came between the two renames), and the work directory removed. Only
    work directories that carry replace_dir's mark for this very path are touched (or its name and nothing yet: cut
    short before the mark was written), and none still in use."""
    path = os.path.realpath(path)
    for work, marked in _abandoned_work_dirs(path):
        if marked:
            _settle(work, path)
        else:
            with contextlib.suppress(OSError):
                os.remove(os.path.join(work, REPLACING))  # empty: the mark was never written
            with contextlib.suppress(OSError):
                os.rmdir(work)  # only ever removes an empty directory


def current_dir(path):
    """The directory holding path's contents as replace_dir left them: path itself, or, after a crash between
    replace_dir's two renames, its previous version in the work directory (recover_dir puts it back); None when
    there is neither. Reads only."""
    if os.path.isdir(path):
        return path
    for work, marked in _abandoned_work_dirs(os.path.realpath(path)):
        if marked and os.path.isdir(os.path.join(work, "old")):
            return os.path.join(work, "old")
    return None


def _abandoned_work_dirs(path):
    """(work directory, marked) of replace_dir(path)'s work directories beside path whose replace is over (their mark
    not locked), each yielded while this process holds its mark's lock: marked when the mark names path, not when
    the replace was cut short before it wrote its mark (the directory holds nothing, or only the empty mark). One
    process at a time replaces a given path (the run or export holds its directory: hold_dir)."""
    parent, name = os.path.split(path)
    try:
        entries = sorted(os.listdir(parent))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        match = _STAGED.fullmatch(entry)
        if not match or match["kind"] != "replacing" or match["name"] != name:
            continue
        work = os.path.join(parent, entry)
        try:
            mark = os.open(os.path.join(work, REPLACING), os.O_RDONLY)
        except FileNotFoundError:
            if _listing(work) == []:  # cut short right after mkdtemp
                yield work, False
            continue
        except OSError:
            continue
        try:
            try:
                fcntl.flock(mark, fcntl.LOCK_EX | fcntl.LOCK_NB)
                text = os.read(mark, 4096)
            except OSError:
                continue  # still in use by the process replacing it
            if not text:
                if _listing(work) == [REPLACING]:  # cut short before the mark was written
                    yield work, False
                continue
            try:
                marked = json.loads(text.decode("utf-8")).get(REPLACING)
            except (ValueError, AttributeError):
                continue  # not replace_dir's mark
            if marked == name:
                yield work, True
        finally:
            os.close(mark)


def _listing(directory):
    try:
        return os.listdir(directory)
    except OSError:
        return None


def _settle(work, path):
    """Finish with a work directory of replace_dir(path): put its old version back if path is missing, remove it."""
    old = os.path.join(work, "old")
    if not os.path.lexists(path) and os.path.isdir(old):
        os.replace(old, path)
    shutil.rmtree(work, ignore_errors=True)


def check_replaceable_dir(path, flag, mark, script):
    """Refuse, before any work, an output directory that script writes whole (replace_dir) unless it is new, empty,
    or script's own earlier output holding nothing else: one with its mark, a JSON file whose "files" lists every
    name script wrote there (written by own_files). A file, a directory of anything else, and an earlier output
    that also holds other files (the user's, which a replace would delete) are refused, naming them."""
    check_writable_dir(path, flag)
    names = sorted(os.listdir(path)) if os.path.isdir(path) else []
    if not names:
        return
    if not os.path.isfile(os.path.join(path, mark)):
        raise UserError(f"{flag} {path}: not empty and not an earlier output of {script} (no {mark}); choose another "
                        "directory")
    written = read_json(os.path.join(path, mark)).get("files")
    if not isinstance(written, list):
        raise UserError(f"{flag} {path}: written by an earlier version of {script}, whose {mark} does not list the "
                        "files it wrote, so other files in it cannot be told apart; remove it or choose another "
                        "directory")
    others = [name for name in names if name not in written]
    if others:
        raise UserError(f"{flag} {path}: an earlier output of {script}, but also holding {', '.join(others[:3])}"
                        f"{', ...' if len(others) > 3 else ''}, which it did not write and a new output would "
                        "delete; move that away or choose another directory")


def own_files(directory, mark):
    """Every name in a directory being built for replace_dir, and mark (written last, listing them): the "files" of
    check_replaceable_dir."""
    return sorted(set(os.listdir(directory)) | {mark})


def file_sha256(path):
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 24), b""):
                digest.update(block)
    except OSError as error:
        raise _naming(error, path)
    return digest.hexdigest()
