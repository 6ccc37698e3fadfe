"""The two programs a code score runs: the candidate's *worker* and the trusted *tester*.

This file is not imported inside the sandbox: `program()` ships its source (stdlib only) as
the program text of each sandbox, followed by a `main(...)` call with that side's job.

Why two processes: the candidate's code runs in an interpreter it fully controls (ctypes, gc,
frames, `sys.settrace`, patched builtins, `os._exit`, forks, signals...), so nothing that
process says or does can be trusted, not its exit status, not its stdout, not a token hidden in
its memory. So the tests never run there. The worker only loads the candidate's code (and
MBPP's `test_setup_code`, which builds objects of the candidate's classes) and then answers
calls: "call NAME with these arguments" -> the return value. The tester, in a second sandbox
the worker cannot see (own PID, mount and IPC namespaces; the only link is the two pipes),
runs the task's real tests; each `candidate(x)` there is a `Remote` that sends the call over
the pipe and returns the *decoded* answer. The verdict comes from the tester alone: only when
the test code ran to its end and every answer was well-formed does it write the per-run
token (which only the host and the tester know) to its verdict fd (not stdout).

What the tester gets back is only ever data of exact built-in types, rebuilt by `decode` from
a strict tagged-JSON message: None, bool, int, float, complex, str, bytes, and list, tuple,
dict, set, frozenset, range of those, nested. Subclasses and foreign objects cannot cross (the
worker reports them, and a forged message decodes to built-ins or fails), so `==`, `abs(...)
< 1e-6`, `math.isclose`, `len`, `bool` in the tests are the built-in ones. One honest
exception: an iterator (a generator, `map`, `filter`, `zip` ...) is run to its end in the
worker (at most MAX_ITEMS items) and arrives as a built-in list iterator over those items, so a
test that does `list(candidate(x))` works and one that compares the generator itself with a
list still fails, as before. Any exception the candidate raises is re-raised in the tester as
the same built-in exception class (else `CandidateError`); a worker that dies, exits, hangs
up or sends garbage raises `CandidateGone`, a BaseException that also marks the run failed even
if the test code catches it.

Name binding in the tester: the trusted preamble (a HumanEval prompt's imports and helpers,
e.g. `poly`, `encode_cyclic`) and the test code define what they define; every other global
name the tests read that is not a built-in is a stdlib module (imported in the tester, e.g.
MBPP 596's `sys`) or, if the worker has it, a `Remote` for the candidate's object of that name
(the entry point, helpers the tests call, MBPP's `root` from the setup code). A `Remote` can
be called and passed back as an argument; nothing else of it reaches the tester.
"""

import builtins
import json
import os
import struct
import sys
from pathlib import Path

MAX_MESSAGE_BYTES = 64 * 1024 * 1024  # one call's answer; far above any real test's values
MAX_ITEMS = 1_000_000  # items an iterator may yield before the answer counts as too big
MAX_DEPTH = 200  # nesting of values, both ways (a self-containing list is refused, not looped on)
_HEADER = struct.Struct(">Q")
_BIG_INT_BITS = 12_000  # above this an int goes as hex: JSON's decimal form hits int_max_str_digits


class CandidateError(Exception):
    """The candidate raised an exception that is not a built-in one (its own class, say)."""


class CandidateGone(BaseException):
    """The worker died, exited, hung up or broke the protocol: the run fails whatever the test does."""


class ForeignValue(TypeError):
    """A value that is not of an exact built-in data type."""


# --- values ------------------------------------------------------------------------------------


def encode(value, materialize=False) -> bytes:
    """`value` as tagged JSON; ForeignValue for anything else. Iterators only with `materialize`."""
    return json.dumps(_tree(value, materialize, 0), ensure_ascii=True, separators=(",", ":")).encode()


def _tree(value, materialize, depth):
    if depth > MAX_DEPTH:
        raise ForeignValue(f"value nested deeper than {MAX_DEPTH} levels")
    kind = type(value)
    if value is None or kind is bool or kind is str or kind is float:
        return value
    if kind is Remote:  # only the tester has these: the candidate's own object, passed back
        return ["ref", value._name]
    if kind is type and value in _BUILTIN_TYPES.values():  # e.g. MBPP 533 passes `int`
        return ["T", value.__name__]
    if kind in _STDLIB_DICTS:  # Counter, OrderedDict, defaultdict: compared as the dict they hold
        kind = dict
    if kind is int:
        return value if value.bit_length() < _BIG_INT_BITS else ["I", hex(value)]
    if kind is bytes:
        return ["b", value.hex()]
    if kind is complex:
        return ["c", value.real, value.imag]
    if kind is range:
        return ["r", _tree(value.start, False, 0), _tree(value.stop, False, 0), _tree(value.step, False, 0)]
    if kind is dict:
        flat = ["d"]
        for key, item in value.items():
            flat += [_tree(key, materialize, depth + 1), _tree(item, materialize, depth + 1)]
        return flat
    tag = _CONTAINER_TAGS.get(kind)
    if tag is None and materialize and _is_iterator(value):
        tag, value = "it", _drain(value)
    if tag is None:
        raise ForeignValue(f"a {kind.__module__}.{kind.__qualname__} is not an exact built-in data type")
    return [tag, *(_tree(item, materialize, depth + 1) for item in value)]


_CONTAINER_TAGS = {list: "l", tuple: "t", set: "s", frozenset: "f"}
_BUILTIN_TYPES = {kind.__name__: kind for kind in (
    bool, int, float, complex, str, bytes, list, tuple, dict, set, frozenset, range, type(None), object)}
_STDLIB_DICTS = ()  # filled in by the worker: it alone meets the candidate's Counters


def _is_iterator(value) -> bool:
    try:
        return iter(value) is value and hasattr(value, "__next__")
    except TypeError:
        return False


def _drain(iterator) -> list:
    items = []
    for item in iterator:
        items.append(item)
        if len(items) > MAX_ITEMS:
            raise ForeignValue(f"the iterator yielded more than {MAX_ITEMS} items")
    return items


def decode(raw: bytes, refs=None):
    """The value a message holds, rebuilt from built-ins only. ValueError for anything malformed.

    `refs` (name -> object) resolves ["ref", name] handles; without it a handle is malformed.
    """
    try:
        tree = json.loads(raw.decode("ascii"))
        return _value(tree, refs, 0)
    except (ValueError, TypeError, KeyError, IndexError, RecursionError, OverflowError, MemoryError) as error:
        raise ValueError(f"malformed value: {type(error).__name__}: {error}"[:300]) from None


def _value(node, refs, depth):
    if depth > MAX_DEPTH:
        raise ValueError("too deep")
    kind = type(node)
    if node is None or kind in (bool, int, float, str):
        return node
    if kind is not list or not node or type(node[0]) is not str:
        raise ValueError(f"unexpected {kind.__name__}")
    tag, items = node[0], node[1:]
    if tag in ("I", "b", "ref", "T") and (len(items) != 1 or type(items[0]) is not str):
        raise ValueError(f"bad {tag!r} node")
    if tag == "I":
        return int(items[0], 16)
    if tag == "b":
        return bytes.fromhex(items[0])
    if tag == "T":
        return _BUILTIN_TYPES[items[0]]
    if tag == "ref":
        if refs is None:
            raise ValueError("a handle where only data may come")
        return refs[items[0]]
    if tag == "c" and len(items) == 2 and all(type(part) in (int, float) for part in items):
        return complex(float(items[0]), float(items[1]))
    if tag == "r" and len(items) == 3 and all(type(part) is int for part in items):
        return range(*items)
    values = [_value(item, refs, depth + 1) for item in items]
    if tag == "l":
        return values
    if tag == "t":
        return tuple(values)
    if tag == "s":
        return set(values)
    if tag == "f":
        return frozenset(values)
    if tag == "it":
        return iter(values)
    if tag == "d" and len(values) % 2 == 0:
        return dict(zip(values[::2], values[1::2]))
    raise ValueError(f"bad {tag!r} node")


# --- framing ------------------------------------------------------------------------------------


def send(fd: int, payload: bytes) -> None:
    data = memoryview(_HEADER.pack(len(payload)) + payload)
    while data:
        data = data[os.write(fd, data):]


def receive(fd: int) -> bytes:
    """One message; EOFError when the other side hung up or announces an oversized message."""
    (size,) = _HEADER.unpack(_read_exactly(fd, _HEADER.size))
    if size > MAX_MESSAGE_BYTES:
        raise EOFError(f"a {size}-byte message, over the {MAX_MESSAGE_BYTES}-byte limit")
    return _read_exactly(fd, size)


def _read_exactly(fd: int, size: int) -> bytes:
    chunks, left = [], size
    while left:
        chunk = os.read(fd, min(left, 1 << 20))
        if not chunk:
            raise EOFError("the other side hung up")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


# --- the worker (untrusted side) ----------------------------------------------------------------


def worker(job: dict) -> None:
    """Load the candidate's code and setup, then answer the tester's requests until it hangs up."""
    global _STDLIB_DICTS
    import collections

    _STDLIB_DICTS = (collections.Counter, collections.OrderedDict, collections.defaultdict)
    requests, answers = (int(fd) for fd in os.environ.pop("PADA_CHANNEL").split())
    namespace = {"__name__": "solution", "__builtins__": builtins}
    for source, filename in ((job["code"], "solution.py"), (job["setup"], "test_setup.py")):
        exec(compile(source, filename, "exec"), namespace)  # an error here: traceback, exit 1
    objects = collections.ChainMap({}, namespace)  # handles of returned objects, then names
    while True:
        try:
            request = json.loads(receive(requests))
        except EOFError:
            return
        if request[0] == "names":
            send(answers, json.dumps([name for name in request[1] if name in namespace]).encode())
            continue
        send(answers, _answer(objects, *request[1:]))


def _answer(objects, name, args, kwargs) -> bytes:
    """Call objects[name]; data comes back as a value, anything else as a handle ("#n")."""
    try:
        function = objects[name]
        result = function(*decode(args.encode(), objects), **decode(kwargs.encode(), objects))
        try:
            return b"v" + encode(result, materialize=True)
        except ForeignValue:
            handle = f"#{len(objects.maps[0])}"
            objects.maps[0][handle] = result
            return b"h" + json.dumps(handle).encode()
    except Exception as error:  # BaseExceptions (SystemExit ...) end the worker: the run fails
        import traceback

        traceback.print_exc()
        kind = "ForeignValue" if isinstance(error, ForeignValue) else type(error).__name__
        return b"e" + json.dumps([kind, str(error)[:500]]).encode()


# --- the tester (trusted side) ------------------------------------------------------------------


class Remote:
    """The candidate's object `name` in the worker: calling it is a request over the pipe."""

    __slots__ = ("_name", "_link")

    def __init__(self, name, link):
        self._name, self._link = name, link

    def __call__(self, *args, **kwargs):
        return self._link.call(self._name, args, kwargs)

    def __repr__(self):
        return f"<candidate's {self._name}>"

    def _refuse(self, *args):
        """Any use as a value: a foreign object in the tests is a fail, caught or not."""
        self._link.fail(f"the tests used the candidate's {self._name}, not built-in data, as a value")

    __bool__ = __eq__ = __ne__ = __lt__ = __le__ = __gt__ = __ge__ = __len__ = __iter__ = __contains__ = _refuse
    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = __truediv__ = __abs__ = __neg__ = _refuse
    __str__ = __int__ = __float__ = __index__ = __getitem__ = __format__ = _refuse
    __hash__ = object.__hash__


class Link:
    """The tester's end of the pipes; `broken` once anything went wrong on the worker's side."""

    def __init__(self, requests: int, answers: int):
        self.requests, self.answers, self.broken = requests, answers, None

    def ask(self, request: list) -> bytes:
        if self.broken:
            raise CandidateGone(self.broken)
        try:
            send(self.requests, json.dumps(request).encode())
            return receive(self.answers)
        except (EOFError, OSError) as error:
            self.fail(f"the candidate's process is gone ({error})")

    def fail(self, why: str):
        self.broken = why
        raise CandidateGone(why)

    def call(self, name, args, kwargs):
        try:
            request = ["call", name, encode(args).decode(), encode(kwargs).decode()]
        except ForeignValue as error:
            raise ForeignValue(f"the tests pass the candidate a value the harness cannot send: {error}") from None
        answer = self.ask(request)
        if answer[:1] == b"v":
            try:
                return decode(answer[1:])
            except ValueError as error:
                self.fail(f"the candidate's {name} sent a malformed answer: {error}")
        if answer[:1] == b"h":
            handle = _exception_free_json(answer[1:])
            if type(handle) is not str or not handle.startswith("#"):
                self.fail(f"the candidate's {name} sent a malformed handle")
            return Remote(handle, self)
        if answer[:1] == b"e":
            kind, message = _exception(answer[1:])
            if kind == "ForeignValue":
                self.fail(f"the candidate's {name} returned {message}")
            builtin = getattr(builtins, kind, None)
            if isinstance(builtin, type) and issubclass(builtin, Exception) and builtin.__module__ == "builtins":
                raise builtin(message)
            raise CandidateError(f"{kind}: {message}")
        self.fail(f"the candidate's {name} sent an answer of unknown kind")


def _exception(raw: bytes) -> tuple[str, str]:
    try:
        kind, message = json.loads(raw.decode("ascii"))
        if type(kind) is str and type(message) is str:
            return kind, message
    except (ValueError, TypeError):
        pass
    return "CandidateError", "malformed exception report"


def _exception_free_json(raw: bytes):
    try:
        return json.loads(raw.decode("ascii"))
    except ValueError:
        return None


def _free_names(sources) -> set:
    """Global names the code reads without defining them at module level, minus built-ins."""
    import symtable

    read, defined = set(), set()
    for source, filename in sources:
        stack = [symtable.symtable(source, filename, "exec")]
        top = stack[0]
        defined.update(symbol.get_name() for symbol in top.get_symbols() if symbol.is_assigned() or symbol.is_imported())
        while stack:
            table = stack.pop()
            stack.extend(table.get_children())
            for symbol in table.get_symbols():
                if symbol.is_referenced() and (table is top or symbol.is_global()):
                    read.add(symbol.get_name())
    return read - defined - set(dir(builtins))


def tester(job: dict) -> None:
    """Run the tests against Remotes; write the token to the verdict fd only if they all ran."""
    requests, answers = (int(fd) for fd in os.environ.pop("PADA_CHANNEL").split())
    verdict_fd, token = int(os.environ.pop("PADA_VERDICT_FD")), os.environ.pop("PADA_VERDICT_TOKEN")
    link = Link(requests, answers)
    sources = [(job["preamble"], "prompt.py"), (job["tests"], "tests.py")]
    namespace = {"__name__": "__main__", "__builtins__": __builtins__}
    # A built-in's name is the candidate's only as the entry point (MBPP 126 is called `sum`): else a
    # candidate defining `abs` or `isinstance` would rewrite the tests.
    wanted = sorted(_free_names(sources) | ({job["entry_point"]} if job.get("entry_point") else set()))
    modules = [name for name in wanted if name in sys.stdlib_module_names and name != job.get("entry_point")]
    for name in modules:
        namespace[name] = __import__(name)
    names = json.loads(link.ask(["names", [name for name in wanted if name not in modules]]))
    if type(names) is not list or not all(type(name) is str for name in names):
        link.fail("the candidate's process answered the name query with garbage")
    namespace.update({name: Remote(name, link) for name in names})
    for source, filename in sources:
        exec(compile(source, filename, "exec"), namespace)
    if link.broken:  # the tests caught a CandidateGone: still a fail
        raise CandidateGone(link.broken)
    os.write(verdict_fd, token.encode())


def program(role: str, **job: str) -> str:
    """The program text for one side: this file's source, then `main` with that side's job."""
    return f"{Path(__file__).read_text(encoding='utf-8')}\n\nmain({dict(job, role=role)!r})\n"


def main(job: dict) -> None:
    if job["role"] == "worker":
        worker(job)
        return
    try:
        tester(job)
    except CandidateGone as gone:
        sys.stderr.write(f"CandidateGone: {gone}\n")
        sys.exit(1)
