"""The benchmark harness behind `bench/run`: test hosts, measured runs, tools, report."""
