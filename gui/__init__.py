"""PySide6 front end. Talks to engine/ only through its public API, from a worker thread."""
