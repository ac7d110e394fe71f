#!/usr/bin/env bash
# make bench: benchmarks need the data plane, which this build does not have yet.
echo "make bench: needs the data plane, which this build does not have yet."
exit 1
