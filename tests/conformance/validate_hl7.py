#!/usr/bin/env python3
"""Strict HL7 v2 validation of files with hl7apy, an outside oracle for what we publish.

Usage: validate_hl7.py FILE...   (files as published, CR-separated, or one segment per line)

Each file is decoded with the charset its MSH-18 names, parsed at hl7apy's STRICT level
with groups found from the message structure (MSH-9.3), and validated against the
structure of its MSH-12 version. Prints `OK <file>` or `FAIL <file>: <reason>` per file
and exits 1 when any failed, 2 when hl7apy is missing.

One adaptation: hl7apy parses OBX-5 (type `varies`) without reading OBX-2, so it checks
every component of an embedded attachment as ST (199 characters) in any version. For an
OBX whose OBX-2 is ED, this script checks ED.5 (the data) with hl7apy's own datatype for
that version instead (ST in v2.4, TX of 65,536 characters in v2.5.1), then hands hl7apy
the message with the data shortened, so the rest is checked as strictly as ever.
"""
import sys

try:
    from hl7apy.consts import VALIDATION_LEVEL
    from hl7apy.exceptions import MaxLengthReached
    from hl7apy.factories import datatype_factory
    from hl7apy.parser import parse_message
    from hl7apy.validation import Validator
except ImportError:
    print("hl7apy is not installed: run scripts/dev.sh setup (or bash .ci/run)", file=sys.stderr)
    sys.exit(2)

CHARSETS = {"8859/1": "latin-1", "UNICODE UTF-8": "utf-8", "ASCII": "ascii", "": "ascii"}


def decode(raw: bytes) -> str:
    first = raw.split(b"\r", 1)[0].split(b"\n", 1)[0]
    fields = first.split(b"|")
    charset = fields[17].decode("ascii") if len(fields) > 17 else ""
    text = raw.decode(CHARSETS.get(charset, "utf-8"))
    return "\r".join(line for line in text.replace("\r\n", "\n").replace("\r", "\n").split("\n") if line)


def check_embedded_data(text: str, version: str) -> str:
    """Checks each ED.5 with its version's datatype; returns the text with them shortened."""
    module = __import__("hl7apy.v" + version.replace(".", "_") + ".datatypes", fromlist=["DATATYPES"])
    data_type = module.DATATYPES["ED_5"][2]
    segments = text.split("\r")
    for i, seg in enumerate(segments):
        fields = seg.split("|")
        if fields[0] != "OBX" or len(fields) < 6 or fields[2] != "ED":
            continue
        comps = fields[5].split("^")
        if len(comps) >= 5:
            datatype_factory(data_type, comps[4], version=version,
                             validation_level=VALIDATION_LEVEL.STRICT)
            comps[4] = comps[4][:16]
            fields[5] = "^".join(comps)
            segments[i] = "|".join(fields)
    return "\r".join(segments)


def version_of(text: str) -> str:
    fields = text.split("\r", 1)[0].split("|")
    return fields[11] if len(fields) > 11 else "?"


def describe(e: Exception) -> str:
    """The finding without the offending value (it may be a whole attachment)."""
    if isinstance(e, MaxLengthReached):
        value, limit = (e.args + (None, None))[:2]
        return f"MaxLengthReached: a value of {len(str(value))} characters, over {limit}"
    return f"{type(e).__name__}: " + " ".join(str(e).split())[:400]


def main(paths):
    failed = 0
    for path in paths:
        try:
            with open(path, "rb") as f:
                text = decode(f.read())
            text = check_embedded_data(text, version_of(text))
            msg = parse_message(text, validation_level=VALIDATION_LEVEL.STRICT, find_groups=True)
            Validator.validate(msg, report_file=None)
            print(f"OK {path}")
        except Exception as e:  # every hl7apy error is a finding
            failed += 1
            print(f"FAIL {path} (v{version_of(text)}): {describe(e)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
