"""asv benchmark suites of jfbbench (see ``asv.conf.json`` and docs/guide/testing.md, "Benchmark history")."""
