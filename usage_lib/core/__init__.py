"""The rules and figures of the usage page, with no widgets and no files: spans and their
buckets (`spans`), who may see what (`access`), the SQL of a refresh (`queries`), the
result (`usage`), and the view's part of a URL (`urlstate`)."""
