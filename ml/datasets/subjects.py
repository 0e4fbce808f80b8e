"""Who each photo shows and their sex, age and ancestry: from subjects.csv or '<person>__' file names."""
import math
import re

from ml.errors import DatasetError, FaceDxError

SUBJECTS_FILE = "subjects.csv"         # optional, at the archive's root: file and subject, sex, age, ancestry, consent
ATTRIBUTES = ("sex", "age", "ancestry")
CONSENT = "display_consent"            # yes: the photo may be shown to staff as a validated case (default no)
CONSENT_WORDS = {"yes": True, "y": True, "true": True, "1": True, "no": False, "n": False, "false": False, "0": False}
MAX_ATTRIBUTE_LENGTH = 64
MAX_AGE = 130
SUBJECT_IN_NAME = re.compile(r"^(?P<subject>[^_/]+?)__")   # or file names like "<person>__photo1.jpg"


def take_subjects(members):
    """Remove subjects.csv from the members and return (members, {path inside the archive: {column: text}})."""
    table = next((m for m in members if m.problem is None and m.parts == (SUBJECTS_FILE,)), None)
    if table is None:
        return members, {}
    import csv
    import io

    try:
        rows = csv.DictReader(io.StringIO(table.read().decode("utf-8-sig")))
        columns = [c for c in ("subject", *ATTRIBUTES, CONSENT) if c in (rows.fieldnames or ())]
        if "file" not in (rows.fieldnames or ()) or not columns:
            raise DatasetError(f"its header is {', '.join(rows.fieldnames or ())[:100] or 'empty'}")
        cells = {(row["file"] or "").strip().replace("\\", "/"):
                 {c: text for c in columns if (text := (row[c] or "").strip())} for row in rows}
    except (UnicodeDecodeError, csv.Error, FaceDxError) as exc:
        raise DatasetError(f"{SUBJECTS_FILE} must be a UTF-8 CSV with a column file and one or more of the columns "
                           f"subject, sex, age, ancestry and {CONSENT} ({exc}).") from None
    return [m for m in members if m is not table], cells


def subject_of(member, table):
    """Return the person a photo shows, from subjects.csv or a '<person>__' file-name prefix, or None."""
    subject = table.get("/".join(member.parts), {}).get("subject")
    if subject:
        return subject[:64]
    match = SUBJECT_IN_NAME.match(member.parts[-1])
    return match.group("subject")[:64] if match else None


def consent_of(cells):
    """Return (whether a photo's subjects.csv row declares that it may be shown, notes on a value left out)."""
    text = cells.get(CONSENT)
    if not text:
        return False, []
    consent = CONSENT_WORDS.get(text.strip().lower())
    if consent is None:
        return False, [f"{SUBJECTS_FILE}: {CONSENT} {text[:20]!r} ignored (not yes or no): the photo is not shown"]
    return consent, []


def attributes_of(cells):
    """Return (the sex, age and ancestry that a photo's subjects.csv row gives, notes on the cells left out)."""
    attributes, notes = {}, []
    for column in ATTRIBUTES:
        text = cells.get(column)
        if not text:
            continue
        value = _age(text) if column == "age" else _attribute_text(text)
        if value is None:
            rule = (f"not a number of years from 0 to {MAX_AGE}" if column == "age"
                    else f"longer than {MAX_ATTRIBUTE_LENGTH} characters or unprintable")
            notes.append(f"{SUBJECTS_FILE}: {column} {text[:20]!r} ignored ({rule})")
        else:
            attributes[column] = value
    return attributes, notes


def _age(text):
    """Return an age in years, or None when the text is not a finite number from 0 to MAX_AGE."""
    try:
        age = float(text)
    except ValueError:
        return None
    return age if math.isfinite(age) and 0 <= age <= MAX_AGE else None


def _attribute_text(text):
    """Return a free-text attribute, or None when it is too long or unprintable."""
    return text if len(text) <= MAX_ATTRIBUTE_LENGTH and text.isprintable() else None
