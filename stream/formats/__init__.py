"""Event logs in the shapes people hold them: JSONL, CSV, TSV (plain or gzip) and Parquet.

A reader per format yields records with their position (`stream.formats.base.Reader`); a
`FieldMap` says which column is the user, the item, the time (and its unit), the weight and the
context; `EventReader` maps each record to the event format and validates it with the same
decoder as a Kafka message. `LogFormat` holds the choices for one log.

    >>> import tempfile, os
    >>> from stream.event import Decoder
    >>> path = os.path.join(tempfile.mkdtemp(), "ratings.csv")
    >>> _ = open(path, "w").write("userId,movieId,rating,timestamp\\n1,31,2.5,1260759144\\n")
    >>> fmt = LogFormat(fields=FieldMap.parse("user=userId,item=movieId,ts=timestamp:s"))
    >>> reader = EventReader(path, fmt, Decoder(), dead_letter=print)
    >>> reader.next()[1]
    Interaction(user='1', item='31', ts=1260759144000, weight=1.0, event_id=None, context={})
    >>> reader.close()
"""

from stream.formats.events import EventReader
from stream.formats.fieldmap import FIELDS, FieldMap, RecordMapper
from stream.formats.logformat import FORMATS, LogFormat, format_of
from stream.formats.parquet import MISSING_PYARROW

__all__ = [
    "FIELDS",
    "FORMATS",
    "MISSING_PYARROW",
    "EventReader",
    "FieldMap",
    "LogFormat",
    "RecordMapper",
    "format_of",
]
