"""Placeholder replaced by the importer."""


class ImportFileError(ValueError):
    pass


def import_file(actor, kind, path, mapping=None, dry_run=False, sheet=None) -> dict:
    raise ImportFileError("not implemented yet")
