"""asv benchmark suites of jfbbench (see ``asv.conf.json`` and README.md, "Benchmark history")."""
