"""Errors a user can fix. The CLI prints them as one line, never a traceback.

Messages name where the problem is, in the order file, line, field:
`my.jsonl line 3: field 'id': duplicate id 'a' (first on line 1)`,
`run.yaml line 4: data.train_size: must be >= 1, got -5`, or the flag:
`--timeout: must be a finite number of seconds > 0, got 'nan'`.
"""


class PadaError(Exception):
    """Base for user-facing errors: the message says what is wrong, where, and how to fix it."""


class DataError(PadaError):
    """Bad or missing input data: the message names the file, line and field."""


def one_line(message: object) -> str:
    """`message` as a single printable line: newlines folded, unencodable characters escaped.

    A lone surrogate from a bad input file (`"\\ud800"`) must not make the error
    report itself crash with UnicodeEncodeError.
    """
    text = " ".join(str(message).split())
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


def read_user_text(path, error: type[PadaError] = DataError, label: str = "") -> str:
    """The UTF-8 text of a file the user named (a leading BOM is tolerated); any problem is one `error` line.

    `label` names what the file is for ("--predictions", "config"), shown when it is missing.
    A file that is not UTF-8 is reported with the line of the first bad byte.
    """
    from pathlib import Path

    path = Path(path)
    shown = f"{label} {path}" if label else str(path)
    if not path.is_file():
        raise error(f"{shown}: {'is a directory, not a file' if path.is_dir() else 'file not found'}")
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise error(f"{shown}: cannot read ({err.strerror or err})") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = raw[:err.start].count(b"\n") + 1
        raise error(f"{path} line {line}: not UTF-8 text ({err.reason} at byte {err.start}); "
                    "save the file as UTF-8") from None
